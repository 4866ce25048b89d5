# Managed by vault-rotation. Changes are overwritten on the next rotation.
pid_file = "/home/api-svc/vault/agent.pid"

vault {
  address = "https://vault.prod.internal:8200"
  ca_cert = "/home/api-svc/vault/ca/ca.pem"
}

auto_auth {
  method "cert" {
    mount_path = "auth/cert"
    config = {
      name        = "agent-api"
      ca_cert     = "/home/api-svc/vault/ca/ca.pem"
      client_cert = "/home/api-svc/vault/mtls/agent.crt"
      client_key  = "/home/api-svc/vault/mtls/agent.key"
      reload      = true
    }
  }

  # Re-authenticate as soon as a rotated agent cert lands on disk.
  enable_reauth_on_new_credentials = true
}

template_config {
  exit_on_retry_failure = true
}

template {
  source               = "/home/api-svc/vault/templates/api.fullchain.ctmpl"
  destination          = "/home/api-svc/vault/render/api.fullchain.pem"
  perms                = "0600"
  error_on_missing_key = true

  exec {
    command = ["/home/api-svc/vault/hooks/reload-tls.sh"]
    timeout = "30s"
  }
}
