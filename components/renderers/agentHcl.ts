// The Vault Agent configuration and its fullchain template, as pure functions.
import { hclString, goTemplateString } from "./quote";

export interface AgentConfigInput {
    /** Vault address as the agent reaches it. */
    vaultAddress: string;
    /** Mount path of the cert auth method, without `auth/`. */
    certAuthPath: string;
    /** The cert-auth mapping name (`agent-<app>`). */
    mappingName: string;
    caPem: string;
    agentCert: string;
    agentKey: string;
    template: string;
    fullchain: string;
    hook: string;
    /** Seconds the post-hook may run before the agent kills it. */
    hookTimeoutSeconds: number;
    pidFile: string;
}

/**
 * `agent.hcl`: cert auto-auth only (strict auth), one template that renders the
 * app's fullchain and runs the reload hook after each render.
 * `exit_on_retry_failure` makes a broken render kill the agent, so the user
 * service shows failed instead of a healthy-looking agent serving an old cert.
 */
export function renderAgentConfig(c: AgentConfigInput): string {
    return `# Managed by vault-rotation. Changes are overwritten on the next rotation.
pid_file = ${hclString(c.pidFile)}

vault {
  address = ${hclString(c.vaultAddress)}
  ca_cert = ${hclString(c.caPem)}
}

auto_auth {
  method "cert" {
    mount_path = ${hclString(`auth/${c.certAuthPath}`)}
    config = {
      name        = ${hclString(c.mappingName)}
      ca_cert     = ${hclString(c.caPem)}
      client_cert = ${hclString(c.agentCert)}
      client_key  = ${hclString(c.agentKey)}
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
  source               = ${hclString(c.template)}
  destination          = ${hclString(c.fullchain)}
  perms                = "0600"
  error_on_missing_key = true

  exec {
    command = [${hclString(c.hook)}]
    timeout = ${hclString(`${c.hookTimeoutSeconds}s`)}
  }
}
`;
}

export interface FullchainTemplateInput {
    pkiMount: string;
    leafRole: string;
    commonName: string;
    altNames: readonly string[];
    ttl: string;
}

/**
 * The consul-template source for `<app>.fullchain.pem`: leaf, then the issuing
 * CA, then the private key.
 *
 * Why the key is in the same file: `pkiCert` re-reads its destination file on
 * every agent start and reuses a still-valid certificate from it; it only knows
 * the key if the key is in that file. With the key written elsewhere, a plain
 * agent restart would render an empty key. nginx accepts the same file for
 * `ssl_certificate` and `ssl_certificate_key`; the file is 0600.
 */
export function renderFullchainTemplate(t: FullchainTemplateInput): string {
    const args = [`common_name=${t.commonName}`, `ttl=${t.ttl}`];
    if (t.altNames.length > 0) args.push(`alt_names=${t.altNames.join(",")}`);
    const call = [goTemplateString(`${t.pkiMount}/issue/${t.leafRole}`), ...args.map(goTemplateString)].join(" ");
    return `{{- with pkiCert ${call} -}}
{{ .Cert }}{{ .CA }}{{ .Key }}
{{- end -}}
`;
}
