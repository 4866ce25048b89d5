# Marker for app-a: proves the cert-auth mapping attaches this app's policies.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
