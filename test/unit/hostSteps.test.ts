// The host steps run for real, as rendered for production, across the user
// boundary: as root (CI) each step's launcher switches to a real unprivileged
// app user; otherwise the steps run as the current user (same-user mode).
// A stand-in agent (test/support/fakeHost.ts) renders and fires the real hook,
// so the rotate unit can be made to fail at each step and interrupted.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { renderAgentFilesScript, renderLauncher } from "../../components/renderers/scripts";
import { parseHostState } from "../../lib/hostState";
import { CERT, FakeHost, findBodyPid, KEY_BLOCK, makeFakeHost } from "../support/fakeHost";
import { runningAsRoot, userMode } from "../support/hostUsers";

jest.setTimeout(60_000);

let host: FakeHost;
beforeEach(() => {
    host = makeFakeHost();
});
afterEach(() => host.close());

const AGENT_KEY = "-----BEGIN EC PRIVATE KEY-----\nAGENT-KEY-SECRET\n-----END EC PRIVATE KEY-----\n";

/** Files and config written, and a first rotation done: the served fullchain is OLD. */
function rotatedOnce(): void {
    expect(host.runFiles(AGENT_KEY).status).toBe(0);
    expect(host.runConfig().status).toBe(0);
    fs.writeFileSync(host.nextRender, CERT("OLD") + CERT("CA") + KEY_BLOCK);
    const first = host.runRotate();
    expect(first.stderr).toMatch(/rendered, installed and reloaded/);
    expect(first.status).toBe(0);
    fs.writeFileSync(host.nextRender, CERT("NEW") + CERT("CA") + KEY_BLOCK);
}

const served = () => fs.readFileSync(host.paths.fullchain, "utf8");
const agentActive = () => host.asAppUser(`PATH=${host.u.hostPath} HOME=${host.u.home} systemctl --user is-active vault-agent-app-a`).stdout.trim();

describe(`agent files (${userMode()})`, () => {
    it("writes key 0600 from stdin, cert and CA 0644, all owned by the app user, and logs one line", () => {
        const r = host.runFiles(AGENT_KEY);
        expect(r.status).toBe(0);
        expect(r.stderr.trim().split("\n")).toEqual(["vault-rotation: app-a: write-agent-files: wrote agent.key (0600), agent.crt, ca.pem"]);
        expect(r.stdout).toBe("");
        expect(fs.readFileSync(host.paths.agentKey, "utf8")).toBe(AGENT_KEY);
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

    it("keeps the old key and leaves no temp file when stdin is empty", () => {
        expect(host.runFiles(AGENT_KEY).status).toBe(0);
        const r = host.runFiles("");
        expect(r.status).not.toBe(0);
        expect(r.stderr).toContain("vault-rotation: app-a: write-agent-files: refusing to install an empty");
        expect(fs.readFileSync(host.paths.agentKey, "utf8")).toBe(AGENT_KEY);
        expect(fs.readdirSync(host.paths.mtlsDir).sort()).toEqual(["agent.crt", "agent.key"]);
    });
});

describe("the launcher", () => {
    const launch = (user: string) => {
        return spawnSync("/bin/sh", ["-c", renderAgentFilesScript({ ...host.u, user, agentCertPem: "C", listenerCaPem: "L" })], { input: "K\n", encoding: "utf8" });
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

describe("user mode", () => {
    it("is the real-user boundary exactly when running as root", () => {
        expect(host.user.created).toBe(runningAsRoot());
        expect(host.user.uid === process.getuid?.()).toBe(!runningAsRoot());
    });
});
