# Lets the Vault Agent issue its app's frontend leaf certificate.
path "pki_int/issue/nginx-app-a" {
  capabilities = ["update"]
}
