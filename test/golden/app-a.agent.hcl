# Managed by vault-rotation. Changes are overwritten on the next rotation.
pid_file = "/home/app-a/vault/agent.pid"

vault {
  address = "https://vault.prod.internal:8200"
  ca_cert = "/home/app-a/vault/ca/ca.pem"
}

auto_auth {
  method "cert" {
    mount_path = "auth/cert"
    config = {
      name        = "agent-app-a"
      ca_cert     = "/home/app-a/vault/ca/ca.pem"
      client_cert = "/home/app-a/vault/mtls/agent.crt"
      client_key  = "/home/app-a/vault/mtls/agent.key"
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
  source               = "/home/app-a/vault/templates/app-a.fullchain.ctmpl"
  destination          = "/home/app-a/vault/render/app-a.fullchain.pem"
  perms                = "0600"
  error_on_missing_key = true

  exec {
    command = ["/home/app-a/vault/hooks/reload-tls.sh"]
    timeout = "30s"
  }
}
