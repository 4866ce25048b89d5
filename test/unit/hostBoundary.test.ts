// Attack regressions: an attacker who owns the app's Unix user plants links,
// directories and races before or during a run. Each test asserts that a
// decoy outside the home (a directory and file the app user cannot change when
// the suite runs as root) is untouched in mode, owner and content, and that the
// run either fails with a line naming the planted path or safely ignores it.
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { CERT, FakeHost, KEY_BLOCK, makeFakeHost, snapshot } from "../support/fakeHost";
import { runningAsRoot, userMode } from "../support/hostUsers";

jest.setTimeout(90_000);

let host: FakeHost;
let decoyDir: string;
let decoyFile: string;
let before: Record<string, string>;

beforeEach(() => {
    host = makeFakeHost();
    // Root's (or, in same-user mode, this user's) files outside the home.
    decoyDir = path.join(host.root, "decoy");
    fs.mkdirSync(decoyDir, { mode: 0o700 });
    decoyFile = path.join(decoyDir, "secret");
    fs.writeFileSync(decoyFile, "ROOT-ONLY-SECRET\n", { mode: 0o600 });
    before = snapshot(decoyDir);
});
afterEach(() => {
    expect(snapshot(decoyDir)).toEqual(before);
    host.close();
});

function plant(command: string): void {
    const r = host.asAppUser(command);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
}

/** Everything in place after one complete rotation, then a fresh render waiting. */
function rotatedOnce(): void {
    expect(host.runFiles().status).toBe(0);
    expect(host.runConfig().status).toBe(0);
    fs.writeFileSync(host.nextRender, CERT("OLD") + CERT("CA") + KEY_BLOCK);
    expect(host.runRotate().status).toBe(0);
    fs.writeFileSync(host.nextRender, CERT("NEW") + CERT("CA") + KEY_BLOCK);
}

describe(`directories planted as links (${userMode()})`, () => {
    it.each([
        ["vault/mtls", "agent-keygen", (h: FakeHost) => h.runKeygen()],
        ["vault", "agent-keygen", (h: FakeHost) => h.runKeygen()],
        ["vault/ca", "write-agent-files", (h: FakeHost) => h.runFiles()],
        ["tls", "write-agent-config", (h: FakeHost) => h.runConfig()],
        ["vault/hooks", "write-agent-config", (h: FakeHost) => h.runConfig()],
        ["vault/render", "write-agent-config", (h: FakeHost) => h.runConfig()],
    ])("~/%s -> a root directory: the %s step refuses it", (dir, step, run) => {
        if (dir !== "vault") plant(`mkdir -p ${host.u.home}/vault`);
        plant(`ln -s ${decoyDir} ${host.u.home}/${dir}`);
        const r = run(host);
        expect(r.status).not.toBe(0);
        expect(r.stderr).toContain(`vault-rotation: app-a: ${step}: refusing ${host.u.home}/${dir}: it is a symbolic link`);
    });

    it("~/tls -> a root directory after a rotation: the rotate step refuses it", () => {
        rotatedOnce();
        plant(`rm -rf ${host.paths.tlsDir} && ln -s ${decoyDir} ${host.paths.tlsDir}`);
        const r = host.runRotate();
        expect(r.status).not.toBe(0);
        expect(r.stderr).toContain(`refusing ${host.paths.tlsDir}: it must be a directory owned by ${host.user.name}, not a link`);
    });
});

describe(`agent key files planted as links (${userMode()})`, () => {
    it.each([
        ["agent.key.next", "agent-keygen", (h: FakeHost) => h.paths.agentKeyNext, (h: FakeHost) => h.runKeygen()],
        ["agent.key.next", "write-agent-files", (h: FakeHost) => h.paths.agentKeyNext, (h: FakeHost) => h.runFiles()],
        ["agent.key", "write-agent-files", (h: FakeHost) => h.paths.agentKey, (h: FakeHost) => h.runFiles()],
    ])("%s -> a root-only file: the %s step refuses it and reads nothing", (_name, step, target, run) => {
        // A signed cert waiting, so the files step gets as far as the key files.
        expect(host.runKeygen().status).toBe(0);
        const file = target(host);
        plant(`rm -f ${file} && ln -s ${decoyFile} ${file}`);
        const r = run(host);
        expect(r.status).not.toBe(0);
        expect(r.stderr).toContain(`vault-rotation: app-a: ${step}: refusing ${file}: it is a symbolic link`);
        expect(r.stdout + r.stderr).not.toContain("ROOT-ONLY-SECRET");
        expect(fs.lstatSync(file).isSymbolicLink()).toBe(true);
    });
});

describe(`files planted before the rotate step (${userMode()})`, () => {
    it.each([
        ["the served fullchain", (h: FakeHost) => h.paths.fullchain],
        ["the fullchain's .prev", (h: FakeHost) => h.paths.previousFullchain],
        ["the hook's status file", (h: FakeHost) => h.paths.reloadStatus],
        ["the agent's render target", (h: FakeHost) => h.paths.renderedFullchain],
    ])("%s as a link to a root-only file: refused, nothing read or moved", (_what, target) => {
        rotatedOnce();
        const file = target(host);
        plant(`rm -f ${file} && ln -s ${decoyFile} ${file}`);
        const r = host.runRotate();
        expect(r.status).not.toBe(0);
        expect(r.stderr).toContain(`refusing ${file}: it is a symbolic link`);
        expect(r.stdout).not.toContain("ROOT-ONLY-SECRET");
        expect(r.stderr).not.toContain("ROOT-ONLY-SECRET");
    });

    it("the fullchain's .prev as a directory: refused, the fullchain is not moved into it", () => {
        rotatedOnce();
        plant(`rm -f ${host.paths.previousFullchain} && mkdir ${host.paths.previousFullchain}`);
        const r = host.runRotate();
        expect(r.status).not.toBe(0);
        expect(r.stderr).toContain(`refusing ${host.paths.previousFullchain}: it is not a regular file`);
        expect(fs.readdirSync(host.paths.previousFullchain)).toEqual([]);
        expect(fs.readFileSync(host.paths.fullchain, "utf8")).toContain(CERT("OLD"));
    });

    it("a status file that is not a hook report is not passed on", () => {
        rotatedOnce();
        // The attacker replaces the hook so it 'reports' something else after installing.
        const hook = fs.readFileSync(host.paths.hook, "utf8").replace(/if \[ "\$failed" -eq 0 \]; then report ok; else report failed; fi/, `cat ${decoyFile} >"$STATUS_FILE" 2>/dev/null || echo 'result=ok reloaded=$(id) failed=' >"$STATUS_FILE"`);
        plant(`cat >${host.paths.hook} <<'EOF'\n${hook}EOF`);
        const r = host.runRotate();
        expect(r.status).not.toBe(0);
        expect(r.stderr).toContain(`${host.paths.reloadStatus} does not hold a post-hook report; refusing to pass it on`);
        expect(r.stdout).toBe("");
    });
});

// The race needs a second user: in same-user mode the attacker IS the step's
// user and may write its own files anyway, so there is no boundary to test.
if (runningAsRoot()) {
    describe("a background loop swapping temp files for links during runs (real users)", () => {
        it("never lets a step write through a swapped link", async () => {
            expect(host.runFiles().status).toBe(0);
            expect(host.runConfig().status).toBe(0);
            const stop = path.join(host.root, "stop-race");
            // As the app user: replace every .vault-rotation.* temp file in the managed dirs by a link to the decoy.
            const loop = `while [ ! -e ${stop} ]; do for d in ${host.paths.mtlsDir} ${host.paths.caDir} ${host.paths.vaultDir} ${host.paths.hooksDir} ${host.paths.tlsDir}; do for f in "$d"/.vault-rotation.*; do [ -e "$f" ] || [ -L "$f" ] || continue; rm -f "$f" && ln -s ${decoyFile} "$f"; done; done; done`;
            const attacker = spawn("runuser", ["-u", host.user.name, "--", "/bin/sh", "-c", loop], { stdio: "ignore" });
            const results: string[] = [];
            try {
                // Until the loop has hit a few runs (it hits about one in three here), at most 60 runs.
                while (results.filter((r) => r !== "ok").length < 3 && results.length < 60) {
                    const keygen = host.runKeygen();
                    for (const r of [keygen, keygen.status === 0 ? host.runFiles() : keygen, host.runConfig()]) {
                        results.push(r.status === 0 ? "ok" : r.stderr.trim());
                    }
                }
            } finally {
                fs.writeFileSync(stop, "");
                await new Promise((resolve) => attacker.on("close", resolve));
            }
            // The race was really run: some steps met a swapped link (and failed rather than follow it).
            expect(results.filter((r) => r !== "ok").length).toBeGreaterThan(0);
            // Each run either completed or failed with a line naming the step.
            for (const r of results) expect(r === "ok" || /^vault-rotation: app-a: (agent-keygen|write-agent-files|write-agent-config): /m.test(r)).toBe(true);
            // The decoy is checked in afterEach; the key file is never a link.
            expect(fs.lstatSync(host.paths.agentKey).isSymbolicLink()).toBe(false);
        });
    });
}
