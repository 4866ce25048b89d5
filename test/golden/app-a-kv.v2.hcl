# KV v2 access for app-a: its own subtree only.
path "secret/data/apps/app-a" {
  capabilities = ["read"]
}
path "secret/data/apps/app-a/*" {
  capabilities = ["read"]
}
path "secret/metadata/apps/app-a" {
  capabilities = ["list", "read"]
}
path "secret/metadata/apps/app-a/*" {
  capabilities = ["list", "read"]
}
