// The pure renderers against golden files, the post-hook run for real with a
// podman shim, the host scripts run for real in a temp dir, and shellcheck.
import { execFileSync, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { hostPaths, vaultNames } from "../../lib/naming";
import { parseHostState } from "../../lib/hostState";
import { renderAgentConfig, renderFullchainTemplate } from "../../components/renderers/agentHcl";
import { renderDebugPolicy, renderIssuePolicy, renderKvPolicy, renderMarkerPolicy } from "../../components/renderers/policies";
import { hclString, shQuote } from "../../components/renderers/quote";
import {
    renderAgentConfigScript,
    renderAgentFilesScript,
    renderMoveAsideScript,
    renderReadHostStateScript,
    renderReloadHook,
    renderRestartScript,
    renderWaitScript,
} from "../../components/renderers/scripts";
import { REPO_ROOT } from "../support/harness";

const GOLDEN = path.join(REPO_ROOT, "test", "golden");
const SHIMS = path.join(REPO_ROOT, "test", "shims");

/** Compares with test/golden/<name>; `UPDATE_GOLDEN=1` rewrites the file instead. */
function expectGolden(name: string, actual: string): void {
    const file = path.join(GOLDEN, name);
    if (process.env.UPDATE_GOLDEN === "1") fs.writeFileSync(file, actual);
    expect(actual).toBe(fs.readFileSync(file, "utf8"));
}

const tmpdirs: string[] = [];
afterAll(() => {
    for (const d of tmpdirs) fs.rmSync(d, { recursive: true, force: true });
});

function tmpdir(): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vault-rotation-render-"));
    tmpdirs.push(dir);
    return dir;
}

const APPS = [
    { app: "app-a", home: "/home/app-a", cn: "app-a.internal", alt: ["app-a.prod.example.com"], label: "tls=true", proxy: "podman:edge-proxy", signal: "SIGHUP" },
    { app: "api", home: "/home/api-svc", cn: "api.internal", alt: [], label: "app=api", proxy: undefined, signal: "SIGUSR1" },
    { app: "jobs", home: "/srv/jobs", cn: "jobs.internal", alt: ["jobs.test.example.com"], label: "tls=true", proxy: "podman:edge", signal: "SIGHUP" },
];

function agentConfigFor(a: (typeof APPS)[number]) {
    const p = hostPaths(a.home, a.app);
    return renderAgentConfig({
        vaultAddress: "https://vault.prod.internal:8200",
        certAuthPath: "cert",
        mappingName: vaultNames(a.app).mapping,
        caPem: p.caPem,
        agentCert: p.agentCert,
        agentKey: p.agentKey,
        template: p.template,
        fullchain: p.fullchain,
        hook: p.hook,
        hookTimeoutSeconds: 30,
        pidFile: `${a.home}/vault/agent.pid`,
    });
}

describe("golden files", () => {
    it.each(APPS)("agent.hcl, template and hook for $app", (a) => {
        expectGolden(`${a.app}.agent.hcl`, agentConfigFor(a));
        expectGolden(
            `${a.app}.fullchain.ctmpl`,
            renderFullchainTemplate({ pkiMount: "pki_int", leafRole: vaultNames(a.app).leafRole, commonName: a.cn, altNames: a.alt, ttl: "720h" }),
        );
        expectGolden(`${a.app}.reload-tls.sh`, renderReloadHook({ app: a.app, label: a.label, proxy: a.proxy, signal: a.signal, statusFile: hostPaths(a.home, a.app).reloadStatus }));
    });

    it("policies", () => {
        expectGolden("app-a-issue.hcl", renderIssuePolicy("pki_int", "nginx-app-a"));
        expectGolden("app-a-marker.hcl", renderMarkerPolicy("app-a"));
        expectGolden("debug-policy.hcl", renderDebugPolicy());
        expectGolden("app-a-kv.v2.hcl", renderKvPolicy("secret", "app-a", "2"));
        expectGolden("app-a-kv.v1.hcl", renderKvPolicy("secret", "app-a", "1"));
    });

    it("host scripts", () => {
        const p = hostPaths("/home/app-a", "app-a");
        expectGolden(
            "app-a.write-agent-files.sh",
            renderAgentFilesScript({
                app: "app-a",
                user: "app-a",
                mtlsDir: p.mtlsDir,
                caDir: p.caDir,
                agentKey: p.agentKey,
                agentCert: p.agentCert,
                caPem: p.caPem,
                agentCertPem: "-----BEGIN CERTIFICATE-----\nAGENT\n-----END CERTIFICATE-----",
                listenerCaPem: "-----BEGIN CERTIFICATE-----\nLISTENER\n-----END CERTIFICATE-----",
            }),
        );
        expectGolden("app-a.restart.sh", renderRestartScript({ app: "app-a", user: "app-a", service: "vault-agent-app-a" }));
        expectGolden(
            "app-a.wait.sh",
            renderWaitScript({ app: "app-a", user: "app-a", service: "vault-agent-app-a", fullchain: p.fullchain, previousFullchain: p.previousFullchain, reloadStatus: p.reloadStatus, waitSeconds: 120 }),
        );
    });
});

describe("renderer properties", () => {
    it("uses cert auto-auth only, with reload and re-auth on new credentials", () => {
        const hcl = agentConfigFor(APPS[0]);
        expect(hcl.match(/method "/g)).toEqual(['method "']);
        expect(hcl).toContain('method "cert"');
        expect(hcl).toContain('mount_path = "auth/cert"');
        expect(hcl).toContain('name        = "agent-app-a"');
        expect(hcl).toMatch(/reload\s+= true/);
        expect(hcl).toContain("enable_reauth_on_new_credentials = true");
        expect(hcl).toContain("exit_on_retry_failure = true");
        expect(hcl).toContain("error_on_missing_key = true");
        expect(hcl).toMatch(/command = \["\/home\/app-a\/vault\/hooks\/reload-tls\.sh"\]/);
        expect(hcl).toContain('timeout = "30s"');
        expect(hcl).not.toMatch(/token_file|approle|"token"/);
    });

    it("renders the leaf with pkiCert (not secret, which reissues on every restart), leaf then chain then key", () => {
        const t = renderFullchainTemplate({ pkiMount: "pki_int", leafRole: "nginx-app-a", commonName: "app-a.internal", altNames: ["a.example.com", "b.example.com"], ttl: "720h" });
        expect(t).toContain('pkiCert "pki_int/issue/nginx-app-a" "common_name=app-a.internal" "ttl=720h" "alt_names=a.example.com,b.example.com"');
        expect(t).not.toMatch(/\bsecret\b/);
        expect(t.indexOf(".Cert")).toBeLessThan(t.indexOf(".CA"));
        expect(t.indexOf(".CA")).toBeLessThan(t.indexOf(".Key"));
    });

    it("keeps KV v2 and v1 paths inside the app's own subtree", () => {
        const v2 = renderKvPolicy("secret", "app-a", "2");
        expect(v2).toContain('path "secret/data/apps/app-a/*"');
        expect(v2).toContain('path "secret/metadata/apps/app-a/*"');
        expect(v2).not.toMatch(/apps\/app-a\*/);
        const v1 = renderKvPolicy("kv", "app-a", "1");
        expect(v1).toContain('path "kv/apps/app-a/*"');
        expect(v1).not.toContain("/data/");
    });

    it("quotes hostile values so they stay data", () => {
        expect(shQuote("a'b; rm -rf /")).toBe(`'a'\\''b; rm -rf /'`);
        const out = execFileSync("/bin/sh", ["-c", `printf '%s' ${shQuote("$(touch /tmp/pwned)'`\n")}`]).toString();
        expect(out).toBe("$(touch /tmp/pwned)'`\n");
        expect(hclString('x"${file("/etc/passwd")}%{ if }\n')).toBe('"x\\"$${file(\\"/etc/passwd\\")}%%{ if }\\n"');
    });

    it("parses the host-state sections", () => {
        const s = parseHostState("### fullchain\nA\nB\n### previous\n### reload\nresult=ok reloaded=x failed=\n### service\nactive\n### agent-version\nVault v1.21.1 (abc)\n### end\n");
        expect(s).toEqual({ fullchain: "A\nB", previous: "", reload: "result=ok reloaded=x failed=", service: "active", login: "", agentVersion: "Vault v1.21.1 (abc)" });
    });

    it("parses the host's cert login line, the first line of its section only", () => {
        const text = (login: string) => `### fullchain\nA\n### service\nactive\n### login\n${login}\n### agent-version\nVault v1.21.1\n### end\n`;
        expect(parseHostState(text("policies=app-a-issue,default"))).toMatchObject({ login: "policies=app-a-issue,default", service: "active", agentVersion: "Vault v1.21.1" });
        expect(parseHostState(text("error=Error authenticating: permission denied\npolicies=default"))).toMatchObject({ login: "error=Error authenticating: permission denied" });
    });
});

describe("the post-hook, run with a podman shim", () => {
    function runHook(opts: { containers: string; fail?: string; label?: string; proxy?: string }) {
        const dir = tmpdir();
        const hook = path.join(dir, "reload-tls.sh");
        const statusFile = path.join(dir, "reload-tls.status");
        fs.writeFileSync(hook, renderReloadHook({ app: "app-a", label: opts.label ?? "tls=true", proxy: opts.proxy, signal: "SIGHUP", statusFile }), { mode: 0o750 });
        fs.writeFileSync(path.join(dir, "containers"), opts.containers);
        if (opts.fail) fs.writeFileSync(path.join(dir, "fail"), opts.fail);
        const r = spawnSync(hook, [], { env: { PATH: `${SHIMS}:/usr/bin:/bin`, PODMAN_SHIM_DIR: dir }, encoding: "utf8" });
        const calls = fs.existsSync(path.join(dir, "calls.log")) ? fs.readFileSync(path.join(dir, "calls.log"), "utf8").trim().split("\n") : [];
        const report = fs.existsSync(statusFile) ? fs.readFileSync(statusFile, "utf8") : undefined;
        return { status: r.status, stdout: r.stdout, calls, report };
    }

    it("reloads every labelled container, then the edge proxy once", () => {
        const r = runHook({ containers: "web-1 tls=true app=a\nweb-2 tls=true\nworker app=a\nedge-proxy tls=true\n", proxy: "podman:edge-proxy" });
        expect(r.status).toBe(0);
        expect(r.calls).toEqual([
            "ps --filter label=tls=true --format {{.Names}}",
            "kill --signal SIGHUP web-1",
            "kill --signal SIGHUP web-2",
            "kill --signal SIGHUP edge-proxy",
        ]);
        expect(r.stdout).toContain("reloaded web-1 (SIGHUP)");
        expect(r.stdout).toContain("edge proxy edge-proxy already reloaded");
        expect(r.report).toBe("result=ok reloaded=web-1,web-2,edge-proxy failed=\n");
    });

    it("reloads the proxy when it does not carry the label", () => {
        const r = runHook({ containers: "web-1 tls=true\nedge-proxy role=edge\n", proxy: "podman:edge-proxy" });
        expect(r.status).toBe(0);
        expect(r.calls.slice(1)).toEqual(["kill --signal SIGHUP web-1", "kill --signal SIGHUP edge-proxy"]);
    });

    it("does nothing harmful when no container matches", () => {
        const r = runHook({ containers: "worker app=a\n" });
        expect(r.status).toBe(0);
        expect(r.calls).toEqual(["ps --filter label=tls=true --format {{.Names}}"]);
        expect(r.stdout).toContain("no running container labelled tls=true");
        expect(r.report).toBe("result=ok reloaded= failed=\n");
    });

    it("exits non-zero and names the container when a reload fails, after trying the rest", () => {
        const r = runHook({ containers: "web-1 tls=true\nweb-2 tls=true\nedge-proxy x=y\n", fail: "web-1\n", proxy: "podman:edge-proxy" });
        expect(r.status).toBe(1);
        expect(r.stdout).toContain("FAILED to reload web-1");
        expect(r.calls).toContain("kill --signal SIGHUP web-2");
        expect(r.calls).toContain("kill --signal SIGHUP edge-proxy");
        expect(r.report).toBe("result=failed reloaded=web-2,edge-proxy failed=web-1\n");
    });
});

describe("host scripts, run for real in a temp dir", () => {
    const me = os.userInfo().username;
    const run = (script: string, stdin?: string) => spawnSync("/bin/sh", ["-c", script], { input: stdin, encoding: "utf8" });

    it("writes key 0600, cert and CA 0644 atomically, the key from stdin", () => {
        const home = tmpdir();
        const p = hostPaths(home, "app-a");
        const script = renderAgentFilesScript({
            app: "app-a",
            user: me,
            mtlsDir: p.mtlsDir,
            caDir: p.caDir,
            agentKey: p.agentKey,
            agentCert: p.agentCert,
            caPem: p.caPem,
            agentCertPem: "-----BEGIN CERTIFICATE-----\nAGENT\n-----END CERTIFICATE-----",
            listenerCaPem: "-----BEGIN CERTIFICATE-----\nLISTENER\n-----END CERTIFICATE-----",
        });
        const key = "-----BEGIN PRIVATE KEY-----\nSECRET\n-----END PRIVATE KEY-----\n";
        expect(script).not.toContain("SECRET");
        const r = run(script, key);
        expect(r.status).toBe(0);
        expect(r.stdout).not.toContain("SECRET");
        expect(fs.readFileSync(p.agentKey, "utf8")).toBe(key);
        expect(fs.statSync(p.agentKey).mode & 0o777).toBe(0o600);
        expect(fs.statSync(p.agentCert).mode & 0o777).toBe(0o644);
        expect(fs.statSync(p.caPem).mode & 0o777).toBe(0o644);
        expect(fs.readFileSync(p.caPem, "utf8")).toContain("LISTENER");
        expect(fs.readdirSync(p.mtlsDir).sort()).toEqual(["agent.crt", "agent.key"]);
    });

    it("keeps the old key and leaves no temp file when stdin is empty", () => {
        const home = tmpdir();
        const p = hostPaths(home, "app-a");
        fs.mkdirSync(p.mtlsDir, { recursive: true });
        fs.writeFileSync(p.agentKey, "OLD KEY\n", { mode: 0o600 });
        const script = renderAgentFilesScript({
            app: "app-a", user: me, mtlsDir: p.mtlsDir, caDir: p.caDir, agentKey: p.agentKey, agentCert: p.agentCert, caPem: p.caPem,
            agentCertPem: "C", listenerCaPem: "L",
        });
        const r = run(script, "");
        expect(r.status).not.toBe(0);
        expect(r.stderr).toContain("vault-rotation: app-a: write-agent-files: refusing to install an empty");
        expect(fs.readFileSync(p.agentKey, "utf8")).toBe("OLD KEY\n");
        expect(fs.readdirSync(p.mtlsDir)).toEqual(["agent.key"]);
    });

    it("refuses to write files for another user without root", () => {
        if (process.getuid?.() === 0) {
            // As root the script chowns; prove it names a missing user instead.
            const home = tmpdir();
            const p = hostPaths(home, "x");
            const r = run(renderAgentFilesScript({ app: "x", user: "no-such-user-xyz", mtlsDir: p.mtlsDir, caDir: p.caDir, agentKey: p.agentKey, agentCert: p.agentCert, caPem: p.caPem, agentCertPem: "C", listenerCaPem: "L" }), "K\n");
            expect(r.status).not.toBe(0);
            expect(r.stderr).toContain("cannot chown");
        } else {
            const home = tmpdir();
            const p = hostPaths(home, "x");
            const r = run(renderAgentFilesScript({ app: "x", user: "root", mtlsDir: p.mtlsDir, caDir: p.caDir, agentKey: p.agentKey, agentCert: p.agentCert, caPem: p.caPem, agentCertPem: "C", listenerCaPem: "L" }), "K\n");
            expect(r.status).not.toBe(0);
            expect(r.stderr).toContain("need root or root");
        }
    });

    it("moves the fullchain aside, and the wait step restores it when no new one appears", () => {
        const home = tmpdir();
        const p = hostPaths(home, "app-a");
        fs.mkdirSync(p.tlsDir, { recursive: true });
        fs.writeFileSync(p.fullchain, "-----BEGIN CERTIFICATE-----\nOLD\n-----END CERTIFICATE-----\n");
        const move = run(renderMoveAsideScript({ app: "app-a", user: me, fullchain: p.fullchain, previousFullchain: p.previousFullchain }));
        expect(move.status).toBe(0);
        expect(fs.existsSync(p.fullchain)).toBe(false);
        expect(fs.readFileSync(p.previousFullchain, "utf8")).toContain("OLD");
        const wait = run(renderWaitScript({ app: "app-a", user: me, service: "vault-agent-app-a", fullchain: p.fullchain, previousFullchain: p.previousFullchain, reloadStatus: p.reloadStatus, waitSeconds: 1 }));
        expect(wait.status).toBe(1);
        expect(wait.stderr).toContain("vault-rotation: app-a: wait-fullchain: no new fullchain at");
        expect(wait.stderr).toContain("journalctl --user -u vault-agent-app-a");
        expect(fs.readFileSync(p.fullchain, "utf8")).toContain("OLD");
    });

    it("waits for the hook's report on the new render, and says so when it never comes", () => {
        const home = tmpdir();
        const p = hostPaths(home, "app-a");
        fs.mkdirSync(p.tlsDir, { recursive: true });
        fs.mkdirSync(p.hooksDir, { recursive: true });
        const script = renderWaitScript({ app: "app-a", user: me, service: "vault-agent-app-a", fullchain: p.fullchain, previousFullchain: p.previousFullchain, reloadStatus: p.reloadStatus, waitSeconds: 2 });
        // A report from the last rotation, older than the new render, does not count.
        fs.writeFileSync(p.reloadStatus, "result=ok reloaded=old failed=\n");
        const old = new Date(Date.now() - 60_000);
        fs.utimesSync(p.reloadStatus, old, old);
        fs.writeFileSync(p.fullchain, "-----BEGIN CERTIFICATE-----\nNEW\n-----END CERTIFICATE-----\n");
        const stale = run(script);
        expect(stale.status).toBe(1);
        expect(stale.stderr).toContain("the new fullchain is in place but the post-hook did not report within 2s");
        expect(fs.readFileSync(p.fullchain, "utf8")).toContain("NEW");
        // The hook's report after the render completes the step.
        fs.writeFileSync(p.reloadStatus, "result=ok reloaded=app-a-web failed=\n");
        const ok = run(script);
        expect(ok.status).toBe(0);
        expect(ok.stdout).toContain("new fullchain rendered and post-hook reported");
    });

    it("prints only certificate blocks of the fullchain, never its key", () => {
        const home = tmpdir();
        const p = hostPaths(home, "app-a");
        fs.mkdirSync(p.tlsDir, { recursive: true });
        fs.writeFileSync(
            p.fullchain,
            "-----BEGIN CERTIFICATE-----\nLEAF\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n-----BEGIN EC PRIVATE KEY-----\nSECRET\n-----END EC PRIVATE KEY-----\n",
        );
        fs.mkdirSync(p.hooksDir, { recursive: true });
        fs.writeFileSync(p.reloadStatus, "result=ok reloaded=app-a-web failed=\n");
        const r = spawnSync("/bin/sh", ["-c", renderReadHostStateScript({ app: "app-a", user: me, service: "vault-agent-app-a", fullchain: p.fullchain, previousFullchain: p.previousFullchain, reloadStatus: p.reloadStatus })], {
            encoding: "utf8",
            env: { PATH: "/usr/bin:/bin" },
        });
        expect(r.status).toBe(0);
        expect(r.stdout).not.toContain("SECRET");
        expect(r.stdout).not.toContain("PRIVATE KEY");
        expect(parseHostState(r.stdout).fullchain).toContain("LEAF");
        expect(parseHostState(r.stdout).fullchain).toContain("CA");
        expect(parseHostState(r.stdout).reload).toBe("result=ok reloaded=app-a-web failed=");
    });
});

describe("shellcheck", () => {
    it("passes on the hook, every host script and the shims", () => {
        const dir = tmpdir();
        const p = hostPaths("/home/app-a", "app-a");
        const base = { app: "app-a", user: "app-a" };
        const scripts: Record<string, string> = {
            "hook.sh": renderReloadHook({ app: "app-a", label: "tls=true", proxy: "podman:edge-proxy", signal: "SIGHUP", statusFile: p.reloadStatus }),
            "files.sh": renderAgentFilesScript({ ...base, mtlsDir: p.mtlsDir, caDir: p.caDir, agentKey: p.agentKey, agentCert: p.agentCert, caPem: p.caPem, agentCertPem: "C", listenerCaPem: "L" }),
            "config.sh": renderAgentConfigScript({ ...base, vaultDir: "/home/app-a/vault", templatesDir: "/home/app-a/vault/templates", hooksDir: p.hooksDir, tlsDir: p.tlsDir, agentHcl: p.agentHcl, agentHclText: "x", template: p.template, templateText: "{{ .Cert }}", hook: p.hook, hookText: "#!/bin/sh\n" }),
            "move.sh": renderMoveAsideScript({ ...base, fullchain: p.fullchain, previousFullchain: p.previousFullchain }),
            "restart.sh": renderRestartScript({ ...base, service: "vault-agent-app-a" }),
            "wait.sh": renderWaitScript({ ...base, service: "vault-agent-app-a", fullchain: p.fullchain, previousFullchain: p.previousFullchain, reloadStatus: p.reloadStatus, waitSeconds: 5 }),
            "read.sh": renderReadHostStateScript({ ...base, service: "vault-agent-app-a", fullchain: p.fullchain, previousFullchain: p.previousFullchain, reloadStatus: p.reloadStatus }),
        };
        const files = Object.entries(scripts).map(([name, text]) => {
            const file = path.join(dir, name);
            // Host scripts run through `sh -c`; give shellcheck the shell they run in.
            fs.writeFileSync(file, text.startsWith("#!") ? text : `#!/bin/sh\n${text}`);
            return file;
        });
        files.push(...fs.readdirSync(SHIMS).map((f) => path.join(SHIMS, f)));
        const r = spawnSync("shellcheck", ["--shell=sh", "--severity=style", ...files], { encoding: "utf8" });
        if (r.error) throw new Error(`shellcheck is not installed (apt-get install shellcheck): ${r.error.message}`);
        expect(r.stdout).toBe("");
        expect(r.status).toBe(0);
    });

    it("passes on the repository's own bash scripts", () => {
        const files = ["scripts/get-vault.sh", "scripts/check-tools.sh", ".ci/run"].map((f) => path.join(REPO_ROOT, f));
        const r = spawnSync("shellcheck", ["--shell=bash", "--severity=style", ...files], { encoding: "utf8" });
        expect(r.stdout).toBe("");
        expect(r.status).toBe(0);
    });
});
