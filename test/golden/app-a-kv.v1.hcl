# KV v1 access for app-a: its own subtree only.
path "secret/apps/app-a" {
  capabilities = ["read", "list"]
}
path "secret/apps/app-a/*" {
  capabilities = ["read", "list"]
}
