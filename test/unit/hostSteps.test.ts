// The host steps run for real, as rendered for production, across the user
// boundary: as root (CI) each step's launcher switches to a real unprivileged
// app user; otherwise the steps run as the current user (same-user mode).
// A stand-in agent (test/support/fakeHost.ts) renders and fires the real hook,
// so the rotate unit can be made to fail at each step and interrupted.
import { spawnSync } from "child_process";
import { X509Certificate } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { renderAgentFilesScript, renderLauncher } from "../../components/renderers/scripts";
import { parseHostState } from "../../lib/hostState";
import { AGENT_CN, CERT, FakeHost, findBodyPid, KEY_BLOCK, makeFakeHost } from "../support/fakeHost";
import { runningAsRoot, userMode } from "../support/hostUsers";
import { privateKeyNeedles } from "../support/keyNeedles";
import { readTextfile } from "../support/prometheus";

jest.setTimeout(60_000);

let host: FakeHost;
beforeEach(() => {
    host = makeFakeHost();
});
afterEach(() => host.close());

/** Files and config written, and a first rotation done: the served fullchain is OLD. */
function rotatedOnce(): void {
    expect(host.runFiles().status).toBe(0);
    expect(host.runConfig().status).toBe(0);
    fs.writeFileSync(host.nextRender, CERT("OLD") + CERT("CA") + KEY_BLOCK);
    const first = host.runRotate();
    expect(first.stderr).toMatch(/rendered, installed and reloaded/);
    expect(first.status).toBe(0);
    fs.writeFileSync(host.nextRender, CERT("NEW") + CERT("CA") + KEY_BLOCK);
}

const served = () => fs.readFileSync(host.paths.fullchain, "utf8");
const agentActive = () => host.asAppUser(`PATH=${host.u.hostPath} HOME=${host.u.home} systemctl --user is-active vault-agent-app-a`).stdout.trim();

/** The public key of a PEM key file or certificate, by openssl. */
function publicKeyOf(file: string, kind: "key" | "cert"): string {
    const args = kind === "key" ? ["pkey", "-in", file, "-pubout"] : ["x509", "-in", file, "-noout", "-pubkey"];
    const r = spawnSync("openssl", args, { encoding: "utf8" });
    expect(r.status).toBe(0);
    return r.stdout;
}

describe(`agent key and files (${userMode()})`, () => {
    it("generates the key on the host as the app user (0600, never printed) and prints only its CSR for the agent CN", () => {
        const r = host.runKeygen();
        expect(r.status).toBe(0);
        expect(r.stderr.trim().split("\n")).toEqual([
            "vault-rotation: app-a: agent-keygen: generated a new agent key (agent.key.next, 0600) and printed its certificate request",
        ]);
        expect(r.stdout).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE REQUEST-----\n$/);
        const st = fs.statSync(host.paths.agentKeyNext);
        expect([st.mode & 0o777, st.uid]).toEqual([0o600, host.user.uid]);
        const key = fs.readFileSync(host.paths.agentKeyNext, "utf8");
        expect(key).toMatch(/-----BEGIN PRIVATE KEY-----/);
        for (const needle of privateKeyNeedles(key)) expect(r.stdout + r.stderr).not.toContain(needle);
        // The CSR is for the agent's CN and for the key just written.
        const csr = spawnSync("openssl", ["req", "-noout", "-subject", "-pubkey", "-verify"], { input: r.stdout, encoding: "utf8" });
        expect(csr.status).toBe(0);
        expect(csr.stdout).toContain(`CN = ${AGENT_CN}`);
        expect(csr.stdout).toContain(publicKeyOf(host.paths.agentKeyNext, "key"));
        expect(fs.readdirSync(host.paths.mtlsDir)).toEqual(["agent.key.next"]);
    });

    it("a keygen that fails midway leaves the waiting key as it was, and no temp file", () => {
        expect(host.runKeygen().status).toBe(0);
        const waiting = fs.readFileSync(host.paths.agentKeyNext, "utf8");
        // An openssl that writes the start of a key and then fails (a full disk, a crash).
        const fake = path.join(host.u.hostPath.split(":")[0], "openssl");
        fs.writeFileSync(fake, `#!/bin/sh\nout=''\nwhile [ $# -gt 0 ]; do [ "$1" = -out ] && out=$2; shift; done\n[ -n "$out" ] && printf '%s\\n' '-----BEGIN PRIVATE KEY-----' 'MIGHAgEAMBMG' >"$out"\nexit 1\n`, { mode: 0o755 });
        const r = host.runKeygen();
        expect(r.status).not.toBe(0);
        expect(r.stderr.trim()).toBe("vault-rotation: app-a: agent-keygen: openssl could not generate an EC P-256 key");
        expect(r.stdout).toBe("");
        expect(fs.readFileSync(host.paths.agentKeyNext, "utf8")).toBe(waiting);
        expect(fs.readdirSync(host.paths.mtlsDir)).toEqual(["agent.key.next"]);
    });

    it("installs the waiting key with the cert signed for it: key 0600, cert and CA 0644, .next gone, one log line", () => {
        const k = host.runKeygen();
        const next = fs.readFileSync(host.paths.agentKeyNext, "utf8");
        const r = host.runFiles(host.signCsr(k.stdout));
        expect(r.status).toBe(0);
        expect(r.stderr.trim().split("\n")).toEqual(["vault-rotation: app-a: write-agent-files: installed agent.key (new, 0600), agent.crt, ca.pem"]);
        // No cert was there before: nothing to revoke.
        expect(r.stdout).toBe("replaced_agent_cert_serial=\n");
        expect(fs.readFileSync(host.paths.agentKey, "utf8")).toBe(next);
        expect(publicKeyOf(host.paths.agentCert, "cert")).toBe(publicKeyOf(host.paths.agentKey, "key"));
        for (const [file, mode] of [
            [host.paths.agentKey, 0o600],
            [host.paths.agentCert, 0o644],
            [host.paths.caPem, 0o644],
            [host.paths.mtlsDir, 0o700],
        ] as const) {
            const st = fs.statSync(file);
            expect([file, st.mode & 0o777, st.uid]).toEqual([file, mode, host.user.uid]);
        }
        expect(fs.readdirSync(host.paths.mtlsDir).sort()).toEqual(["agent.crt", "agent.key"]);
    });

    it("a renewal (a new cert for the key in place) keeps the key and replaces the cert", () => {
        const k = host.runKeygen();
        const first = host.signCsr(k.stdout);
        expect(host.runFiles(first).status).toBe(0);
        const key = fs.readFileSync(host.paths.agentKey, "utf8");
        const renewed = host.signCsr(k.stdout);
        const r = host.runFiles(renewed);
        expect(r.status).toBe(0);
        expect(r.stderr).toContain("installed agent.key (kept: it matches the certificate), agent.crt, ca.pem");
        // The serial of the cert it replaced, for the revocation of a hand-issued one (RotationCheck).
        const replacedSerial = new X509Certificate(first).serialNumber;
        expect(r.stdout).toBe(`replaced_agent_cert_serial=${replacedSerial}\n`);
        expect(fs.readFileSync(host.paths.agentKey, "utf8")).toBe(key);
        expect(fs.readFileSync(host.paths.agentCert, "utf8").trim()).toBe(renewed.trim());
    });

    it("a new key waiting does not replace the live one until its own cert arrives", () => {
        const first = host.runKeygen();
        const firstCert = host.signCsr(first.stdout);
        expect(host.runFiles(firstCert).status).toBe(0);
        const live = fs.readFileSync(host.paths.agentKey, "utf8");
        expect(host.runKeygen().status).toBe(0);
        // A re-run with the current cert (e.g. the CA bundle changed) keeps the live key.
        expect(host.runFiles(firstCert).status).toBe(0);
        expect(fs.readFileSync(host.paths.agentKey, "utf8")).toBe(live);
        expect(fs.existsSync(host.paths.agentKeyNext)).toBe(true);
    });

    it("refuses a cert whose key is on neither file, changing nothing and naming the fix", () => {
        expect(host.runFiles().status).toBe(0);
        const before = ["agentKey", "agentCert", "caPem"].map((f) => fs.readFileSync(host.paths[f as "agentKey"], "utf8"));
        // A cert for a key this host never had (signed for another host's request).
        const other = spawnSync("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "/dev/null", "-subj", `/CN=${AGENT_CN}`], { encoding: "utf8" });
        const r = host.runFiles(host.signCsr(other.stdout));
        expect(r.status).not.toBe(0);
        expect(r.stderr).toContain(`write-agent-files: neither ${host.paths.agentKeyNext} nor ${host.paths.agentKey} holds the key this certificate was signed for`);
        expect(r.stderr).toContain("set a new rotation epoch to generate a new key");
        expect(["agentKey", "agentCert", "caPem"].map((f) => fs.readFileSync(host.paths[f as "agentKey"], "utf8"))).toEqual(before);
    });

    it("refuses a certificate that does not parse, and leaves no temp file", () => {
        expect(host.runFiles().status).toBe(0);
        const r = host.runFiles(`-----BEGIN CERTIFICATE-----\n${Buffer.from("NOT-A-REAL-CERT").toString("base64")}\n-----END CERTIFICATE-----\n`);
        expect(r.status).not.toBe(0);
        expect(r.stderr).toContain("vault-rotation: app-a: write-agent-files: the signed agent certificate does not parse");
        expect(fs.readdirSync(host.paths.mtlsDir).sort()).toEqual(["agent.crt", "agent.key"]);
    });
});

describe("the launcher", () => {
    const launch = (user: string) => {
        return spawnSync("/bin/sh", ["-c", renderAgentFilesScript({ ...host.u, user, agentCertPem: "C", listenerCaPem: "L" })], { encoding: "utf8" });
    };

    it("refuses a user with uid 0", () => {
        const r = launch("root");
        expect(r.status).not.toBe(0);
        expect(r.stderr).toContain("vault-rotation: app-a: write-agent-files: refusing to run as root: it has uid 0");
    });

    it("names a user that does not exist", () => {
        const r = launch("no-such-user-xyz");
        expect(r.status).not.toBe(0);
        expect(r.stderr).toContain("vault-rotation: app-a: write-agent-files: no user no-such-user-xyz on");
    });

    it("hands the body nothing of its own environment", () => {
        const r = spawnSync("/bin/sh", ["-c", renderLauncher(host.u, "env", "env | sort")], {
            encoding: "utf8",
            env: { ...process.env, VAULT_TOKEN: "runner-token", PULUMI_CONFIG_PASSPHRASE: "pass", PULUMI_OIDC_TOKEN: "oidc", SSH_AUTH_SOCK: "/tmp/agent" },
        });
        expect(r.status).toBe(0);
        const names = r.stdout
            .trim()
            .split("\n")
            .map((l) => l.split("=")[0])
            .filter((n) => n !== "PWD" && n !== "SHLVL" && n !== "_");
        expect(names.sort()).toEqual(["DBUS_SESSION_BUS_ADDRESS", "HOME", "LANG", "LOGNAME", "PATH", "USER", "XDG_RUNTIME_DIR"]);
        expect(r.stdout).toContain(`HOME=${host.u.home}\n`);
        expect(r.stdout).toContain(`USER=${host.user.name}\n`);
    });
});

describe(`the rotate unit (${userMode()})`, () => {
    it("renders, installs, reloads and reports only public facts, logging one line", () => {
        rotatedOnce();
        const r = host.runRotate();
        expect(r.status).toBe(0);
        const lines = r.stderr.trim().split("\n");
        expect(lines).toHaveLength(1);
        expect(lines[0]).toMatch(/^vault-rotation: app-a: rotate: restarted vault-agent-app-a; new fullchain rendered, installed and reloaded in \d+s$/);
        expect(served()).toContain(CERT("NEW"));
        expect(fs.statSync(host.paths.fullchain).uid).toBe(host.user.uid);
        expect(fs.readFileSync(host.paths.previousFullchain, "utf8")).toContain(CERT("OLD"));
        const s = parseHostState(r.stdout);
        expect(s.fullchain).toBe((CERT("NEW") + CERT("CA")).trim());
        expect(s.previous).toBe((CERT("OLD") + CERT("CA")).trim());
        expect(s.reload).toBe("result=ok reloaded=app-a-web,edge-proxy failed=");
        expect(s.service).toBe("active");
        expect(s.agentVersion).toBe("Vault v1.21.0 (fake)");
        expect(r.stdout).toContain("### login\nerror=fake vault: no server here\n");
        expect(r.stdout).not.toContain("PRIVATE KEY");
        expect(r.stdout).not.toContain("TEST-LEAF-KEY-MATERIAL");
    });

    it("puts the previous fullchain back and restarts the agent on it when the restart fails", () => {
        rotatedOnce();
        fs.writeFileSync(path.join(host.shimState, "fail-next-restart"), "");
        const r = host.runRotate();
        expect(r.status).not.toBe(0);
        expect(r.stderr).toContain("vault-rotation: app-a: rotate: systemctl --user restart vault-agent-app-a failed; look at: journalctl --user -u vault-agent-app-a");
        expect(r.stderr).toContain(`restored the previous fullchain to ${host.paths.fullchain}`);
        expect(r.stderr).toContain("restarted vault-agent-app-a on the previous certificate");
        expect(served()).toContain(CERT("OLD"));
        expect(fs.readFileSync(host.paths.renderedFullchain, "utf8")).toContain(CERT("OLD"));
        expect(agentActive()).toBe("active");
    });

    it("puts the previous fullchain back when the agent renders nothing in time", () => {
        rotatedOnce();
        fs.writeFileSync(path.join(host.root, "no-render"), "");
        const r = host.runRotate(2);
        expect(r.status).not.toBe(0);
        expect(r.stderr).toContain(`no new fullchain rendered at ${host.paths.renderedFullchain} within 2s`);
        expect(r.stderr).toContain("restored the previous fullchain");
        expect(served()).toContain(CERT("OLD"));
        expect(fs.readFileSync(host.paths.renderedFullchain, "utf8")).toContain(CERT("OLD"));
    });

    it("puts the previous fullchain back when the post-hook reports a failed reload", () => {
        rotatedOnce();
        fs.writeFileSync(path.join(host.podmanDir, "fail"), "edge-proxy\n");
        const r = host.runRotate();
        expect(r.status).not.toBe(0);
        expect(r.stderr).toContain("the post-hook reported a failed reload (result=failed reloaded=app-a-web failed=edge-proxy)");
        expect(served()).toContain(CERT("OLD"));
    });

    it("reloads again on the previous certificate when the hook had already reloaded the new one", () => {
        rotatedOnce();
        const calls = path.join(host.podmanDir, "calls.log");
        const reloads = () => (fs.existsSync(calls) ? fs.readFileSync(calls, "utf8").split("\n").filter((l) => l.startsWith("kill ") && l.endsWith(" app-a-web")).length : 0);
        const before = reloads();
        // app-a-web reloads on the new leaf, then the edge fails: the unit puts the old file back,
        // and app-a-web must not keep serving the new leaf from memory.
        fs.writeFileSync(path.join(host.podmanDir, "fail"), "edge-proxy\n");
        const r = host.runRotate();
        expect(r.status).not.toBe(0);
        expect(served()).toContain(CERT("OLD"));
        expect(reloads() - before).toBe(2);
        expect(r.stderr).toContain("could not reload on the previous certificate"); // the edge still fails
        fs.rmSync(path.join(host.podmanDir, "fail"));
        expect(host.runRotate().status).toBe(0);
    });

    it("stops a body that is stopped (SIGSTOP) at the step's time limit, and puts everything back", async () => {
        rotatedOnce();
        // The restart hangs: the unit is in flight, with the render moved aside, when the app user stops it.
        const hang = path.join(host.shimState, "hang");
        fs.writeFileSync(hang, "");
        const run = host.startRotate(60, 3);
        let pid: number | undefined;
        for (let i = 0; i < 100 && (pid === undefined || fs.existsSync(host.paths.renderedFullchain)); i++) {
            await new Promise((r) => setTimeout(r, 100));
            pid = findBodyPid("app-a", "rotate");
        }
        expect(pid).toBeDefined();
        expect(host.asAppUser(`kill -STOP ${pid}`).status).toBe(0);
        fs.rmSync(hang);
        const done = await run.done;
        expect(done.status).not.toBe(0);
        expect(done.stderr).toContain("vault-rotation: app-a: rotate: the step did not finish within 3s (rotation.stepTimeoutSeconds); it was stopped (what was put back is said above)");
        expect(done.stderr).toContain(`restored the previous fullchain to ${host.paths.fullchain}`);
        expect(done.stderr).toContain("restarted vault-agent-app-a on the previous certificate");
        expect(served()).toContain(CERT("OLD"));
        expect(fs.readFileSync(host.paths.renderedFullchain, "utf8")).toContain(CERT("OLD"));
        expect(fs.existsSync(host.paths.rotationArmed)).toBe(false);
        expect(findBodyPid("app-a", "rotate")).toBeUndefined();
        expect(agentActive()).toBe("active");
    }, 60_000);

    it.each([
        ["SIGTERM", "the trap puts everything back"],
        ["SIGKILL", "no trap runs, and the served file was never moved"],
    ] as const)("leaves the previous fullchain served when killed between move-aside and restart (%s: %s)", async (signal, _why) => {
        rotatedOnce();
        // The restart hangs, so the unit is caught right after the move-aside.
        const hang = path.join(host.shimState, "hang");
        fs.writeFileSync(hang, "");
        const run = host.startRotate();
        let pid: number | undefined;
        for (let i = 0; i < 100 && (pid === undefined || fs.existsSync(host.paths.renderedFullchain)); i++) {
            await new Promise((r) => setTimeout(r, 100));
            pid = findBodyPid("app-a", "rotate");
        }
        expect(pid).toBeDefined();
        expect(fs.existsSync(host.paths.renderedPrevious)).toBe(true);
        process.kill(pid!, signal);
        if (signal === "SIGKILL") {
            // What was in flight dies with the run (systemd would have no restart to finish either).
            host.asAppUser("pkill -KILL -f 'systemctl --user restart'");
        }
        fs.rmSync(hang);
        const done = await run.done;
        expect(done.status).not.toBe(0);
        expect(served()).toContain(CERT("OLD"));
        if (signal === "SIGTERM") {
            expect(done.stderr).toContain("restored the previous fullchain");
            expect(fs.readFileSync(host.paths.renderedFullchain, "utf8")).toContain(CERT("OLD"));
        }
        // The next run completes the rotation.
        const again = host.runRotate();
        expect(again.stderr).toMatch(/rendered, installed and reloaded/);
        expect(served()).toContain(CERT("NEW"));
    });
});

describe(`the verify and record-verification steps (${userMode()})`, () => {
    /** What the systemctl and podman shims were asked to do, but asking whether the service is active. */
    const shimCalls = () =>
        [path.join(host.shimState, "calls.log"), path.join(host.podmanDir, "calls.log")].flatMap((f) =>
            (fs.existsSync(f) ? fs.readFileSync(f, "utf8").split("\n") : []).filter((l) => l !== "" && !/is-active/.test(l)).map((l) => `${path.basename(path.dirname(f))}: ${l}`),
        );
    const verifyStatus = () => fs.readFileSync(host.paths.verifyStatus, "utf8").trim();
    const stopService = () => expect(host.asAppUser(`PATH=${host.u.hostPath} HOME=${host.u.home} systemctl --user stop vault-agent-app-a`).status).toBe(0);

    it("reads the host's public facts and restarts, reloads and moves nothing; the record step then marks it passed", () => {
        rotatedOnce();
        host.allowLogin(["default", "app-a-issue"]);
        const servedBefore = served();
        const callsBefore = shimCalls();
        const r = host.runVerify();
        expect(r.stderr.trim().split("\n")).toEqual(["vault-rotation: app-a: verify: every host item passed (nothing restarted or reloaded)"]);
        expect(r.status).toBe(0);
        const s = parseHostState(r.stdout);
        expect(s.fullchain).toBe((CERT("OLD") + CERT("CA")).trim());
        expect(s.reload).toBe("result=ok reloaded=app-a-web,edge-proxy failed=");
        expect(s.service).toBe("active");
        expect(s.login).toBe("policies=app-a-issue,default");
        expect(new X509Certificate(s.agentCert).serialNumber).toBe(new X509Certificate(fs.readFileSync(host.paths.agentCert, "utf8")).serialNumber);
        expect(r.stdout).not.toContain("PRIVATE KEY");
        expect(r.stdout).not.toContain("TEST-LEAF-KEY-MATERIAL");
        // Read-only: no systemctl or podman call but `is-active`, the served file untouched.
        expect(callsBefore.length).toBeGreaterThan(0);
        expect(shimCalls()).toEqual(callsBefore);
        expect(served()).toBe(servedBefore);
        expect(verifyStatus()).toMatch(/^result=pending at=\d+ ok_at=0$/);
        let m = readTextfile(host.metricsTextfile);
        expect(m.value("vault_rotation_last_verification_ok", { app: "app-a" })).toBe(0);
        expect(m.value("vault_rotation_cert_not_after_timestamp_seconds", { app: "app-a", kind: "leaf" })).toBe(Date.parse(new X509Certificate(CERT("OLD")).validTo) / 1000);

        const rec = host.runRecordVerification();
        expect(rec.status).toBe(0);
        expect(verifyStatus()).toMatch(/^result=ok at=(\d+) ok_at=\1$/);
        m = readTextfile(host.metricsTextfile);
        expect(m.value("vault_rotation_last_verification_ok", { app: "app-a" })).toBe(1);
        expect(Math.abs(m.value("vault_rotation_last_verification_success_timestamp_seconds", { app: "app-a" })! - Date.now() / 1000)).toBeLessThan(60);
        expect(m.mode).toBe(0o644);
        expect(m.dirMode).toBe(0o755);
        expect(fs.statSync(host.metricsTextfile).uid).toBe(host.user.uid);
    });

    it("fails on every host item that is wrong, each in the checklist's format, prints no facts, and records the failure", () => {
        rotatedOnce();
        host.allowLogin(["default", "app-a-issue", "debug-policy"]);
        expect(host.runVerify().status).not.toBe(0); // extra policy alone
        stopService();
        host.writeAsAppUser(host.paths.reloadStatus, "result=failed reloaded= failed=app-a-web\n", 0o644);
        const r = host.runVerify({ agentMinRemainingSeconds: 30 * 86400 });
        expect(r.status).not.toBe(0);
        expect(r.stdout).toBe("");
        const lines = r.stderr.trim().split("\n");
        expect(lines).toContain("app-a: post-hook reload: expected result=ok from its last run, found result=failed reloaded= failed=app-a-web");
        expect(lines.some((l) => /^app-a: agent service: expected active, found (inactive|failed)/.test(l))).toBe(true);
        expect(lines).toContain("app-a: token policies: expected [app-a-issue,default], found [app-a-issue,debug-policy,default]");
        expect(lines.some((l) => l.startsWith("app-a: agent cert remaining validity: expected at least 2592000s (until after the next run), found notAfter "))).toBe(true);
        expect(lines[lines.length - 1]).toContain("the verification failed (nothing was restarted or reloaded)");
        expect(verifyStatus()).toMatch(/^result=failed at=\d+ ok_at=0$/);
        expect(readTextfile(host.metricsTextfile).value("vault_rotation_last_verification_ok", { app: "app-a" })).toBe(0);
    });

    it("keeps the time of the last pass through a later failure", () => {
        rotatedOnce();
        host.allowLogin(["default", "app-a-issue"]);
        expect(host.runVerify().status).toBe(0);
        expect(host.runRecordVerification().status).toBe(0);
        const okAt = /ok_at=(\d+)/.exec(verifyStatus())![1];
        stopService();
        expect(host.runVerify().status).not.toBe(0);
        expect(verifyStatus()).toMatch(new RegExp(`^result=failed at=\\d+ ok_at=${okAt}$`));
        expect(readTextfile(host.metricsTextfile).value("vault_rotation_last_verification_success_timestamp_seconds", { app: "app-a" })).toBe(Number(okAt));
    });

    it("a cert login that fails is a failed item naming the mapping", () => {
        rotatedOnce();
        const r = host.runVerify();
        expect(r.status).not.toBe(0);
        expect(r.stderr).toContain("app-a: cert login: expected a token from auth/cert/login with name agent-app-a (as ");
        expect(r.stderr).toContain("found fake vault: no server here");
    });
});

describe("user mode", () => {
    it("is the real-user boundary exactly when running as root", () => {
        expect(host.user.created).toBe(runningAsRoot());
        expect(host.user.uid === process.getuid?.()).toBe(!runningAsRoot());
    });
});
