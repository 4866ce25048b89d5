// Real serving for the sandbox (runbook Part 4): Debian's nginx per app, as the
// app's user, on a free loopback port, serving `<home>/tls/<app>.fullchain.pem`;
// and one nginx edge proxy, as an edge user of its own, that terminates client
// TLS with its own certificate (issued by the sandbox's Vault PKI) and proxies
// to each app over TLS verified against the upstream trust bundle that the
// program's EdgeTrust step writes (`proxy_ssl_verify on`, `proxy_ssl_name`).
//
// The nginx processes start lazily, through the podman shim, the first time
// their "container" is reloaded: the apps' after the first render (the
// post-hook), the edge's after the first bundle (the edge-trust step), as the
// containers would already be running on a real host.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { unusedLoopbackPort } from "./httpsServer";
import { vaultRequest, VaultConnection } from "./vaultAdmin";

export const EDGE_SERVER_NAME = "edge.rehearsal.internal";
export const EDGE_CONTAINER = "edge-proxy";

export interface ServingPlan {
    /** Loopback port per app name. */
    appPorts: Record<string, number>;
    edgePort: number;
    /** The edge's own certificate and key (PEM), issued by the PKI under test. */
    edgeCertPem: string;
    edgeKeyPem: string;
}

/** Picks free loopback ports and issues the edge proxy's certificate from `pkiMount`. */
export async function planServing(vault: VaultConnection, pkiMount: string, apps: string[]): Promise<ServingPlan> {
    const role = await vaultRequest(vault, "POST", `${pkiMount}/roles/rehearsal-edge`, {
        allowed_domains: [EDGE_SERVER_NAME],
        allow_bare_domains: true,
        allow_subdomains: false,
        allow_localhost: false,
        server_flag: true,
        client_flag: false,
        key_type: "ec",
        key_bits: 256,
        max_ttl: "72h",
    });
    if (role.status >= 300) throw new Error(`cannot create the rehearsal edge role: HTTP ${role.status}: ${role.text}`);
    const issued = await vaultRequest<{ data?: { certificate: string; issuing_ca: string; private_key: string } }>(vault, "POST", `${pkiMount}/issue/rehearsal-edge`, {
        common_name: EDGE_SERVER_NAME,
        ttl: "48h",
    });
    const d = issued.body.data;
    if (issued.status >= 300 || !d) throw new Error(`cannot issue the rehearsal edge certificate: HTTP ${issued.status}: ${issued.text}`);
    const appPorts: Record<string, number> = {};
    for (const app of apps) appPorts[app] = await unusedLoopbackPort();
    return { appPorts, edgePort: await unusedLoopbackPort(), edgeCertPem: `${d.certificate}\n${d.issuing_ca}\n`, edgeKeyPem: d.private_key };
}

const TEMP_PATHS = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"];

function nginxHttpPreamble(prefix: string): string {
    return [
        `pid ${prefix}/nginx.pid;`,
        `error_log ${prefix}/error.log warn;`,
        "worker_processes 1;",
        "events { worker_connections 512; }",
        "http {",
        "  access_log off;",
        ...TEMP_PATHS.map((t) => `  ${t}_temp_path ${prefix}/tmp/${t};`),
    ].join("\n");
}

/** nginx.conf of an app: its fullchain is both certificate and key (the key is in the file). */
export function appNginxConf(o: { prefix: string; port: number; app: string; commonName: string; fullchain: string }): string {
    return `${nginxHttpPreamble(o.prefix)}
  server {
    listen 127.0.0.1:${o.port} ssl;
    server_name ${o.commonName};
    ssl_certificate ${o.fullchain};
    ssl_certificate_key ${o.fullchain};
    location / { return 200 "${o.app}\\n"; }
  }
}
`;
}

/** nginx.conf of the edge: one server per app (by Host), upstream TLS verified against the bundle. */
export function edgeNginxConf(o: { prefix: string; port: number; certFile: string; bundle: string; apps: { commonName: string; port: number }[] }): string {
    const servers = o.apps.map(
        (a) => `  server {
    listen 127.0.0.1:${o.port} ssl;
    server_name ${a.commonName};
    ssl_certificate ${o.certFile};
    ssl_certificate_key ${o.certFile};
    location / {
      proxy_pass https://127.0.0.1:${a.port};
      proxy_ssl_verify on;
      proxy_ssl_verify_depth 3;
      proxy_ssl_trusted_certificate ${o.bundle};
      proxy_ssl_name ${a.commonName};
      proxy_ssl_server_name on;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }`,
    );
    return `${nginxHttpPreamble(o.prefix)}
${servers.join("\n")}
}
`;
}

/** The temp directories nginx wants under its prefix. */
export function nginxDirs(prefix: string): string[] {
    return [prefix, path.join(prefix, "tmp"), ...TEMP_PATHS.map((t) => path.join(prefix, "tmp", t))];
}

/** Stops the nginx whose pid file is under `prefix` (graceful, then forced). */
export function stopNginx(prefix: string): void {
    const pidFile = path.join(prefix, "nginx.pid");
    if (!fs.existsSync(pidFile)) return;
    const pid = Number(fs.readFileSync(pidFile, "utf8").trim());
    if (!Number.isInteger(pid) || pid <= 1) return;
    try {
        process.kill(pid, "SIGQUIT");
    } catch {
        return;
    }
    for (let i = 0; i < 30; i++) {
        try {
            process.kill(pid, 0);
        } catch {
            return;
        }
        spawnSync("sleep", ["0.1"]);
    }
    try {
        process.kill(pid, "SIGKILL");
    } catch {
        // gone
    }
}
