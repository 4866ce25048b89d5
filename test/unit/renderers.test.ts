// The pure renderers against golden files, the post-hook run for real with a
// podman shim, and shellcheck. The host steps themselves run for real, across
// the user boundary, in hostSteps.test.ts and hostBoundary.test.ts.
import { execFileSync, spawnSync } from "child_process";
import { X509Certificate } from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { defaultMetricsTextfile, hostPaths, vaultNames } from "../../lib/naming";
import { parseHostState } from "../../lib/hostState";
import { renderAgentConfig, renderFullchainTemplate } from "../../components/renderers/agentHcl";
import { renderDebugPolicy, renderIssuePolicy, renderKvPolicy, renderMarkerPolicy } from "../../components/renderers/policies";
import { hclString, shQuote } from "../../components/renderers/quote";
import {
    AGENT_VERSION_FN,
    metricsPaths,
    renderAgentConfigBody,
    renderAgentConfigScript,
    renderAgentFilesBody,
    renderAgentKeygenBody,
    renderAgentKeygenScript,
    renderAgentFilesScript,
    renderLauncher,
    renderRecordVerificationBody,
    renderRecordVerificationScript,
    renderReloadHook,
    renderRotateBody,
    renderVerifyBody,
    renderVerifyScript,
    renderRotateScript,
} from "../../components/renderers/scripts";
import { parseVaultVersion } from "../../providers/versionDrift";
import { REPO_ROOT } from "../support/harness";
import { readTextfile } from "../support/prometheus";
import { TestPki } from "../support/tls";

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
        fullchain: p.renderedFullchain,
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
        expectGolden(`${a.app}.reload-tls.sh`, renderReloadHook(hookInput(a.home, a.app, { label: a.label, proxy: a.proxy, signal: a.signal })));
    });

    it("policies", () => {
        expectGolden("app-a-issue.hcl", renderIssuePolicy("pki_int", "nginx-app-a"));
        expectGolden("app-a-marker.hcl", renderMarkerPolicy("app-a"));
        expectGolden("debug-policy.hcl", renderDebugPolicy());
        expectGolden("app-a-kv.v2.hcl", renderKvPolicy("secret", "app-a", "2"));
        expectGolden("app-a-kv.v1.hcl", renderKvPolicy("secret", "app-a", "1"));
    });

    it("host scripts", () => {
        const u = { app: "app-a", user: "app-a", home: "/home/app-a", hostPath: "/usr/local/bin:/usr/bin:/bin" };
        expectGolden("app-a.agent-keygen.sh", renderAgentKeygenScript({ ...u, commonName: "app-a-agent.internal" }));
        expectGolden(
            "app-a.write-agent-files.sh",
            renderAgentFilesScript({
                ...u,
                agentCertPem: "-----BEGIN CERTIFICATE-----\nAGENT\n-----END CERTIFICATE-----",
                listenerCaPem: "-----BEGIN CERTIFICATE-----\nLISTENER\n-----END CERTIFICATE-----",
            }),
        );
        expectGolden(
            "app-a.rotate.sh",
            renderRotateScript({ ...u, service: "vault-agent-app-a", waitSeconds: 120, login: { vaultAddress: "https://vault.prod.internal:8200", certAuthPath: "cert", mapping: "agent-app-a" } }),
        );
        expectGolden(
            "app-a.verify.sh",
            renderVerifyScript({
                ...u,
                service: "vault-agent-app-a",
                login: { vaultAddress: "https://vault.prod.internal:8200", certAuthPath: "cert", mapping: "agent-app-a" },
                expectedPolicies: ["default", "app-a-issue", "app-a-marker"],
                leafMinRemainingSeconds: 86400,
                agentMinRemainingSeconds: 108000,
                textfile: "/home/app-a/metrics/vault-rotation-app-a.prom",
            }),
        );
        expectGolden("app-a.record-verification.sh", renderRecordVerificationScript({ ...u, textfile: "/home/app-a/metrics/vault-rotation-app-a.prom" }));
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
        expect(s).toEqual({ fullchain: "A\nB", previous: "", reload: "result=ok reloaded=x failed=", service: "active", login: "", agentVersion: "Vault v1.21.1 (abc)", agentCert: "" });
        expect(parseHostState("### fullchain\nA\n### agent-cert\nC\n### end\n").agentCert).toBe("C");
    });

    // The host reads `vault version`; what it passes on must parse on the runner, whatever form the
    // build prints (a Vault built from its Go module, as here, has no commit hash: "v1.21.0, built").
    test.each([
        ["Vault v1.21.0, built 2025-12-01T15:56:17Z", "1.21.0"],
        ["Vault v1.21.1 (2453aac2638a6ae243341b4e0657fd8aea1cbbc1), built 2025-11-18T13:04:32Z", "1.21.1"],
        ["Vault v1.13.0+ent (a1b2c3), built 2023-03-01T00:00:00Z", "1.13.0+ent"],
        ["Vault v1.16.0-rc1 ('abc'+CHANGES)", "1.16.0-rc1"],
        ["Vault v1.21.0", "1.21.0"],
    ])("the host's agent_version passes on %j and the runner reads %s", (printed, version) => {
        const bin = fs.mkdtempSync(path.join(os.tmpdir(), "vr-version-"));
        try {
            fs.writeFileSync(path.join(bin, "vault"), `#!/bin/sh\nprintf '%s\\n' ${shQuote(printed)} 'second line ignored'\n`, { mode: 0o755 });
            const out = execFileSync("/bin/sh", ["-c", `${AGENT_VERSION_FN}agent_version`], { env: { PATH: `${bin}:/usr/bin:/bin` } }).toString();
            expect(out).toBe(`${printed}\n`);
            expect(parseVaultVersion(out)?.text).toBe(version);
        } finally {
            fs.rmSync(bin, { recursive: true, force: true });
        }
    });

    test.each([["Vault v1.21.0\u001b[31m red"], ["not vault 1.21.0"], ["Vault 1.21.0"], [""]])("the host's agent_version passes on nothing for %j", (printed) => {
        const bin = fs.mkdtempSync(path.join(os.tmpdir(), "vr-version-"));
        try {
            fs.writeFileSync(path.join(bin, "vault"), `#!/bin/sh\nprintf '%s\\n' ${shQuote(printed)}\n`, { mode: 0o755 });
            const out = execFileSync("/bin/sh", ["-c", `${AGENT_VERSION_FN}agent_version`], { env: { PATH: `${bin}:/usr/bin:/bin` } }).toString();
            expect(out).toBe("");
        } finally {
            fs.rmSync(bin, { recursive: true, force: true });
        }
    });

    it("parses the host's cert login line, the first line of its section only", () => {
        const text = (login: string) => `### fullchain\nA\n### service\nactive\n### login\n${login}\n### agent-version\nVault v1.21.1\n### end\n`;
        expect(parseHostState(text("policies=app-a-issue,default"))).toMatchObject({ login: "policies=app-a-issue,default", service: "active", agentVersion: "Vault v1.21.1" });
        expect(parseHostState(text("error=Error authenticating: permission denied\npolicies=default"))).toMatchObject({ login: "error=Error authenticating: permission denied" });
    });

    it("runs every host step's body through the launcher, which never touches the home itself", () => {
        const u = { app: "app-a", user: "app-a", home: "/home/app-a", hostPath: "/usr/bin:/bin" };
        const launcher = renderLauncher(u, "rotate", "BODY-MARKER");
        const body = launcher.slice(launcher.indexOf("BODY="));
        // Everything the launcher runs before the body: id, uname, stat, setpriv, env. No path under the home.
        const before = launcher.slice(0, launcher.indexOf("BODY="));
        expect(before).not.toMatch(/\$APP_HOME|mkdir|chmod|chown|mv |cat |head /);
        expect(body).toContain("env -i PATH=\"$HOST_PATH\" HOME=\"$APP_HOME\"");
        expect(body).toContain('setpriv --reuid="$uid" --regid="$gid" --init-groups -- "$@"');
        // In a session of its own, stdin from /dev/null, under the step's time limit.
        expect(body).toContain('env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin setsid -w timeout -s TERM -k 10 300 "$@" </dev/null');
        expect(renderLauncher({ ...u, timeoutSeconds: 42 }, "rotate", "BODY-MARKER")).toContain("setsid -w timeout -s TERM -k 10 42 ");
    });
});

function hookInput(home: string, app: string, r: { label: string; proxy?: string; signal: string }) {
    const p = hostPaths(home, app);
    return { app, ...r, renderedFullchain: p.renderedFullchain, fullchain: p.fullchain, statusFile: p.reloadStatus, metrics: metricsPaths(home, app, defaultMetricsTextfile(home, app)) };
}

describe("the post-hook, run with a podman shim", () => {
    function runHook(opts: { containers: string; fail?: string; label?: string; proxy?: string; plant?: (p: ReturnType<typeof hostPaths>) => void }) {
        const home = tmpdir();
        const p = hostPaths(home, "app-a");
        for (const d of [p.hooksDir, p.renderDir, p.tlsDir]) fs.mkdirSync(d, { recursive: true });
        fs.writeFileSync(p.renderedFullchain, "-----BEGIN CERTIFICATE-----\nNEW\n-----END CERTIFICATE-----\n");
        opts.plant?.(p);
        fs.writeFileSync(p.hook, renderReloadHook(hookInput(home, "app-a", { label: opts.label ?? "tls=true", proxy: opts.proxy, signal: "SIGHUP" })), { mode: 0o750 });
        const dir = tmpdir();
        fs.writeFileSync(path.join(dir, "containers"), opts.containers);
        if (opts.fail) fs.writeFileSync(path.join(dir, "fail"), opts.fail);
        const r = spawnSync(p.hook, [], { env: { PATH: `${SHIMS}:/usr/bin:/bin`, PODMAN_SHIM_DIR: dir }, encoding: "utf8" });
        const calls = fs.existsSync(path.join(dir, "calls.log")) ? fs.readFileSync(path.join(dir, "calls.log"), "utf8").trim().split("\n") : [];
        const report = fs.existsSync(p.reloadStatus) ? fs.readFileSync(p.reloadStatus, "utf8") : undefined;
        return { status: r.status, stdout: r.stdout, calls, report, paths: p };
    }

    it("installs the render where the app reads it (0600), then reloads", () => {
        const r = runHook({ containers: "web-1 tls=true\n" });
        expect(r.status).toBe(0);
        expect(fs.readFileSync(r.paths.fullchain, "utf8")).toContain("NEW");
        expect(fs.statSync(r.paths.fullchain).mode & 0o777).toBe(0o600);
        expect(r.stdout).toContain(`installed ${r.paths.fullchain}`);
        expect(fs.readdirSync(r.paths.tlsDir)).toEqual(["app-a.fullchain.pem"]);
    });

    it("replaces a planted link at the served path instead of writing through it", () => {
        const decoyDir = tmpdir();
        const decoy = path.join(decoyDir, "decoy");
        fs.writeFileSync(decoy, "DECOY\n");
        const r = runHook({ containers: "web-1 tls=true\n", plant: (p) => fs.symlinkSync(decoy, p.fullchain) });
        expect(r.status).toBe(0);
        expect(fs.readFileSync(decoy, "utf8")).toBe("DECOY\n");
        expect(fs.lstatSync(r.paths.fullchain).isSymbolicLink()).toBe(false);
    });

    it("reports a failed install and reloads nothing when the served path is a directory", () => {
        const r = runHook({ containers: "web-1 tls=true\n", plant: (p) => fs.mkdirSync(p.fullchain) });
        expect(r.status).toBe(1);
        expect(r.calls).toEqual([]);
        expect(r.report).toBe("result=failed reloaded= failed=install\n");
    });

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

    it("writes the metrics textfile after every run: 0644 in a 0755 directory, parsed as Prometheus text, with the certificates' notAfter", () => {
        const pki = TestPki.create();
        try {
            const root = pki.rootCa("Metrics Root");
            const leaf = pki.issue({ issuer: root, commonName: "app-a.internal", dnsNames: ["app-a.internal"], days: 30 });
            const agent = pki.issue({ issuer: root, commonName: "app-a-agent.internal", days: 3 });
            const rendered = `${leaf.certPem}${root.certPem}${leaf.keyPem}`;
            const ok = runHook({
                containers: "web-1 tls=true\n",
                plant: (p) => {
                    fs.writeFileSync(p.renderedFullchain, rendered);
                    fs.mkdirSync(p.mtlsDir, { recursive: true });
                    fs.writeFileSync(p.agentCert, agent.certPem);
                },
            });
            expect(ok.status).toBe(0);
            const textfile = defaultMetricsTextfile(path.dirname(ok.paths.vaultDir), "app-a");
            const m = readTextfile(textfile);
            const app = { app: "app-a" };
            expect(m.value("vault_rotation_cert_not_after_timestamp_seconds", { ...app, kind: "leaf" })).toBe(Date.parse(new X509Certificate(leaf.certPem).validTo) / 1000);
            expect(m.value("vault_rotation_cert_not_after_timestamp_seconds", { ...app, kind: "agent" })).toBe(Date.parse(new X509Certificate(agent.certPem).validTo) / 1000);
            expect(m.value("vault_rotation_last_reload_ok", app)).toBe(1);
            const lastGood = m.value("vault_rotation_last_reload_success_timestamp_seconds", app)!;
            expect(Math.abs(lastGood - Date.now() / 1000)).toBeLessThan(60);
            expect(m.value("vault_rotation_last_render_timestamp_seconds", app)).toBe(Math.floor(fs.statSync(ok.paths.renderedFullchain).mtimeMs / 1000));
            // No verification yet: no sample rather than a made-up one.
            expect(m.value("vault_rotation_last_verification_ok", app)).toBeUndefined();
            expect(m.families.every((f) => f.type === "GAUGE" && f.help !== "")).toBe(true);
            // Readable by node_exporter, writable by the app user alone; no temp file left beside it.
            expect(m.mode).toBe(0o644);
            expect(m.dirMode).toBe(0o755);
            expect(m.siblings).toEqual([]);
            // The private key in the render is in no line of it.
            expect(fs.readFileSync(textfile, "utf8")).not.toContain("PRIVATE");
        } finally {
            pki.cleanup();
        }
    });

    it("says in the textfile when a reload failed, and keeps the time of the last good one", () => {
        const r = runHook({ containers: "web-1 tls=true\n", fail: "web-1\n" });
        expect(r.status).toBe(1);
        const m = readTextfile(defaultMetricsTextfile(path.dirname(r.paths.vaultDir), "app-a"));
        expect(m.value("vault_rotation_last_reload_ok", { app: "app-a" })).toBe(0);
        expect(m.value("vault_rotation_last_reload_success_timestamp_seconds", { app: "app-a" })).toBeUndefined();
    });

    it("does not write the textfile through a link planted in place of its directory", () => {
        const decoyDir = tmpdir();
        const r = runHook({
            containers: "web-1 tls=true\n",
            plant: (p) => fs.symlinkSync(decoyDir, path.join(path.dirname(p.vaultDir), "metrics")),
        });
        expect(r.status).toBe(0);
        expect(r.stdout).toContain("could not write the metrics textfile");
        expect(fs.readdirSync(decoyDir)).toEqual([]);
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

describe("shellcheck", () => {
    it("passes on the hook, every host script and the shims", () => {
        const dir = tmpdir();
        const u = { app: "app-a", user: "app-a", home: "/home/app-a", hostPath: "/usr/bin:/bin" };
        const rotate = { ...u, service: "vault-agent-app-a", waitSeconds: 5, login: { vaultAddress: "https://vault:8200", certAuthPath: "cert", mapping: "agent-app-a" } };
        const agentFiles = { ...u, agentCertPem: "C", listenerCaPem: "L" };
        const keygen = { ...u, commonName: "app-a-agent.internal" };
        const config = { ...u, agentHclText: "x", templateText: "{{ .Cert }}", hookText: "#!/bin/sh\n" };
        const verify = { ...rotate, expectedPolicies: ["default", "app-a-issue"], leafMinRemainingSeconds: 60, agentMinRemainingSeconds: 60, textfile: "/home/app-a/metrics/m.prom" };
        // The launchers, and the bodies they carry as one quoted string (which shellcheck cannot see into).
        const scripts: Record<string, string> = {
            "hook.sh": renderReloadHook(hookInput("/home/app-a", "app-a", { label: "tls=true", proxy: "podman:edge-proxy", signal: "SIGHUP" })),
            "keygen.sh": renderAgentKeygenScript(keygen),
            "keygen-body.sh": renderAgentKeygenBody(keygen),
            "files.sh": renderAgentFilesScript(agentFiles),
            "files-body.sh": renderAgentFilesBody(agentFiles),
            "config.sh": renderAgentConfigScript(config),
            "config-body.sh": renderAgentConfigBody(config),
            "rotate.sh": renderRotateScript(rotate),
            "rotate-body.sh": renderRotateBody(rotate),
            "verify-body.sh": renderVerifyBody(verify),
            "record-body.sh": renderRecordVerificationBody({ ...u, textfile: "/home/app-a/metrics/m.prom" }),
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
        const files = ["scripts/get-vault.sh", "scripts/get-pulumi-engine.sh", "scripts/get-pulumi-plugins.sh", "scripts/lib/heartbeat.sh", "scripts/check-tools.sh", ".ci/run"].map((f) => path.join(REPO_ROOT, f));
        // -x: follow what the build scripts source (scripts/lib/heartbeat.sh).
        const r = spawnSync("shellcheck", ["-x", "--shell=bash", "--severity=style", ...files], { encoding: "utf8" });
        expect(r.stdout).toBe("");
        expect(r.status).toBe(0);
    });
});
