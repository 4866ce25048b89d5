# Managed by vault-rotation. Changes are overwritten on the next rotation.
pid_file = "/srv/jobs/vault/agent.pid"

vault {
  address = "https://vault.prod.internal:8200"
  ca_cert = "/srv/jobs/vault/ca/ca.pem"
}

auto_auth {
  method "cert" {
    mount_path = "auth/cert"
    config = {
      name        = "agent-jobs"
      ca_cert     = "/srv/jobs/vault/ca/ca.pem"
      client_cert = "/srv/jobs/vault/mtls/agent.crt"
      client_key  = "/srv/jobs/vault/mtls/agent.key"
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
  source               = "/srv/jobs/vault/templates/jobs.fullchain.ctmpl"
  destination          = "/srv/jobs/vault/render/jobs.fullchain.pem"
  perms                = "0600"
  error_on_missing_key = true

  exec {
    command = ["/srv/jobs/vault/hooks/reload-tls.sh"]
    timeout = "30s"
  }
}
