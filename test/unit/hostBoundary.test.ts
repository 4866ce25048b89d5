// Attack regressions: an attacker who owns the app's Unix user plants links,
// directories and races before or during a run. Each test asserts that a
// decoy outside the home (a directory and file the app user cannot change when
// the suite runs as root) is untouched in mode, owner and content, and that the
// run either fails with a line naming the planted path or safely ignores it.
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { renderAgentKeygenBody, renderAgentKeygenScript, renderLauncher, renderRotateScript } from "../../components/renderers/scripts";
import { parseHostState } from "../../lib/hostState";
import { AGENT_CN, CERT, FakeHost, KEY_BLOCK, makeFakeHost, snapshot } from "../support/fakeHost";
import { createAppUsers, removeAppUsers, runningAsRoot, userMode } from "../support/hostUsers";

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

    it("a CERTIFICATE block holding the agent key's DER is not passed on", () => {
        rotatedOnce();
        // The app user wraps its agent key (DER, base64) in a CERTIFICATE header in the next render:
        // well-formed base64 lines, so only parsing it tells it is no certificate.
        expect(host.runKeygen().status).toBe(0);
        const der = spawnSync("openssl", ["pkey", "-in", host.paths.agentKeyNext, "-outform", "DER"], { encoding: "buffer" });
        expect(der.status).toBe(0);
        const b64 = der.stdout.toString("base64").replace(/.{1,64}/g, (l) => `${l}\n`);
        const forged = `-----BEGIN CERTIFICATE-----\n${b64}-----END CERTIFICATE-----\n`;
        fs.writeFileSync(host.nextRender, CERT("NEW") + forged + KEY_BLOCK);
        const r = host.runRotate();
        expect(r.status).not.toBe(0);
        expect(r.stderr).toContain("holds a CERTIFICATE block that is not a certificate; refusing to pass it on");
        expect(r.stdout).not.toContain(b64.split("\n")[1]);
    });

    it("a certificate block with the agent key's DER appended after the certificate passes on the certificate alone", () => {
        rotatedOnce();
        expect(host.runKeygen().status).toBe(0);
        const key = spawnSync("openssl", ["pkey", "-in", host.paths.agentKeyNext, "-outform", "DER"]).stdout;
        const cert = spawnSync("openssl", ["x509", "-outform", "DER"], { input: Buffer.from(CERT("NEW")) }).stdout;
        // openssl x509 reads the certificate's DER and ignores what follows it in the block.
        const b64 = Buffer.concat([cert, key]).toString("base64").replace(/.{1,64}/g, (l) => `${l}\n`);
        fs.writeFileSync(host.nextRender, `-----BEGIN CERTIFICATE-----\n${b64}-----END CERTIFICATE-----\n${CERT("CA")}${KEY_BLOCK}`);
        const r = host.runRotate();
        expect(r.status).toBe(0);
        const s = parseHostState(r.stdout);
        expect(s.fullchain).toBe((CERT("NEW") + CERT("CA")).trim());
        const keyB64 = key.toString("base64");
        for (let i = 0; i + 16 <= keyB64.length; i += 16) expect(r.stdout.replace(/\n/g, "")).not.toContain(keyB64.slice(i, i + 16));
    });

    it("a status file that is not a hook report is not passed on", () => {
        rotatedOnce();
        // The attacker replaces the hook so it 'reports' something else after installing.
        const original = fs.readFileSync(host.paths.hook, "utf8");
        const hook = original.replace(/^  report ok$/m, `  cat ${decoyFile} >"$STATUS_FILE" 2>/dev/null || echo 'result=ok reloaded=$(id) failed=' >"$STATUS_FILE"`);
        expect(hook).not.toBe(original);
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

/** Runs `script` (a host step) from a new pseudo-terminal, as an operator's `pulumi up` in a terminal would. */
function fromTerminal(script: string): { status: number | null; output: string } {
    const file = path.join(host.root, "step-from-terminal.sh");
    fs.writeFileSync(file, script, { mode: 0o700 });
    const r = spawnSync("script", ["-qec", `/bin/sh ${file}`, "/dev/null"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 });
    return { status: r.status, output: `${r.stdout}${r.stderr}`.replace(/\r/g, "") };
}

// What the step body (as the app user) can do to the terminal it was started from:
// its controlling tty (field 7 of /proc/self/stat, 0 for none), and TIOCSTI on
// /dev/tty and on every standard descriptor (0x5412: push a byte into the input).
const TTY_PROBE = `
printf 'probe tty_nr=%s\\n' "$(cut -d' ' -f7 /proc/self/stat)"
for target in /dev/tty /proc/self/fd/0 /proc/self/fd/1 /proc/self/fd/2; do
  if perl -e 'open(T, "+<", $ARGV[0]) or exit 3; my $c = "#"; exit(ioctl(T, 0x5412, $c) ? 0 : 4)' "$target" 2>/dev/null; then
    printf 'probe tiocsti %s injected\\n' "$target"
  else
    printf 'probe tiocsti %s refused\\n' "$target"
  fi
done
`;

describe(`the operator's terminal (${userMode()})`, () => {
    it("a step started from a terminal runs its body without it: no controlling tty, TIOCSTI refused", () => {
        const r = fromTerminal(renderLauncher(host.u, "probe", TTY_PROBE));
        expect(r.output).toContain("probe tty_nr=0\n");
        expect(r.output).not.toContain("injected");
        expect(r.output.match(/probe tiocsti \S+ refused/g)).toHaveLength(4);
        expect(r.status).toBe(0);
    });

    it("(control) the same probe started without the launcher does hold the terminal", () => {
        const direct = runningAsRoot() ? `runuser -u ${host.user.name} -- /bin/sh -c '${TTY_PROBE.replace(/'/g, `'\\''`)}'` : TTY_PROBE;
        const r = fromTerminal(direct);
        expect(r.output).toMatch(/probe tty_nr=[1-9]\d*\n/);
        // Where the kernel still allows TIOCSTI (before 6.2, or dev.tty.legacy_tiocsti=1, as here) the attack is real.
        const legacy = "/proc/sys/dev/tty/legacy_tiocsti";
        if (!fs.existsSync(legacy) || fs.readFileSync(legacy, "utf8").trim() === "1") expect(r.output).toContain("probe tiocsti /dev/tty injected");
    });

    it("a body that finds a controlling terminal anyway refuses to run", () => {
        // The body's own guard, started from a terminal without the launcher's new session.
        const body = renderAgentKeygenBody({ ...host.u, commonName: AGENT_CN });
        const direct = runningAsRoot() ? `runuser -u ${host.user.name} -- env -i HOME=${host.u.home} PATH=${host.u.hostPath} /bin/sh -c '${body.replace(/'/g, `'\\''`)}'` : `env -i HOME=${host.u.home} PATH=${host.u.hostPath} /bin/sh -c '${body.replace(/'/g, `'\\''`)}'`;
        const r = fromTerminal(direct);
        expect(r.output).toContain("vault-rotation: app-a: agent-keygen: refusing to run with a controlling terminal");
        expect(fs.existsSync(host.paths.agentKeyNext)).toBe(false);
    });
});

if (runningAsRoot()) {
    describe("the operator's terminal during a rotation (real users)", () => {
        it("no process of the app user holds a controlling tty while the rotate unit runs from a terminal", async () => {
            expect(host.runFiles().status).toBe(0);
            expect(host.runConfig().status).toBe(0);
            const file = path.join(host.root, "rotate-from-terminal.sh");
            fs.writeFileSync(file, renderRotateScript({ ...host.u, service: "vault-agent-app-a", waitSeconds: 5, login: { vaultAddress: "https://127.0.0.1:1", certAuthPath: "cert", mapping: "agent-app-a" } }), { mode: 0o700 });
            const child = spawn("script", ["-qec", `/bin/sh ${file}`, "/dev/null"], { stdio: ["ignore", "pipe", "pipe"] });
            let output = "";
            child.stdout.on("data", (d) => (output += String(d)));
            const done = new Promise<number | null>((resolve) => child.on("close", resolve));
            const seen = new Map<number, string>();
            let finished = false;
            void done.then(() => (finished = true));
            while (!finished) {
                for (const entry of fs.readdirSync("/proc").filter((e) => /^\d+$/.test(e))) {
                    try {
                        if (fs.statSync(`/proc/${entry}`).uid !== host.user.uid) continue;
                        const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
                        const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
                        // fields[0] is field 3 (state): the tty is field 7.
                        seen.set(Number(entry), `${stat.slice(0, stat.lastIndexOf(")") + 1)} tty_nr=${fields[4]}`);
                    } catch {
                        // gone meanwhile
                    }
                }
                await new Promise((r) => setTimeout(r, 20));
            }
            expect(await done).toBe(0);
            expect(output).toContain("new fullchain rendered, installed and reloaded");
            expect(seen.size).toBeGreaterThan(2);
            expect([...seen.values()].filter((s) => !s.endsWith(" tty_nr=0"))).toEqual([]);
        });
    });

    describe("a host PATH entry that is not root's (real users)", () => {
        it("fails the step naming the entry, and the planted program never runs", () => {
            // app-a's own user owns a directory another app's PATH names (here: this step's, as if
            // apps[1].host.path began with a directory of apps[0]'s user). It plants `openssl`.
            const [other] = createAppUsers([{ app: "other", home: path.join(host.root, "other-home") }]);
            try {
                const planted = path.join(host.root, "shared-bin");
                const marker = path.join(host.root, "planted-ran");
                fs.mkdirSync(planted, { mode: 0o755 });
                fs.writeFileSync(path.join(planted, "openssl"), `#!/bin/sh\ntouch ${marker}\nexec /usr/bin/openssl "$@"\n`, { mode: 0o755 });
                fs.chownSync(planted, other.uid, other.gid);
                fs.chownSync(path.join(planted, "openssl"), other.uid, other.gid);
                const script = renderAgentKeygenScript({ ...host.u, hostPath: `${planted}:${host.u.hostPath}`, commonName: AGENT_CN });
                const r = spawnSync("/bin/sh", ["-c", script], { encoding: "utf8" });
                expect(r.status).not.toBe(0);
                expect(r.stderr.trim()).toBe(`vault-rotation: app-a: agent-keygen: refusing host PATH entry ${planted}: ${planted} is owned by uid ${other.uid}, not root`);
                expect(fs.existsSync(marker)).toBe(false);
                expect(fs.existsSync(host.paths.agentKeyNext)).toBe(false);
            } finally {
                removeAppUsers([other]);
            }
        });
    });
}

describe(`a host PATH entry writable by others (${userMode()})`, () => {
    it.each([
        ["a world-writable directory", 0o777, ""],
        ["a directory below a world-writable, non-sticky one", 0o755, "parent"],
    ])("refuses %s, naming it", (_what, mode, parent) => {
        const base = path.join(host.root, "loose");
        fs.mkdirSync(base, { mode: 0o755 });
        const dir = parent ? path.join(base, "bin") : base;
        if (parent) {
            fs.mkdirSync(dir, { mode });
            fs.chmodSync(base, 0o777);
        } else {
            fs.chmodSync(dir, mode);
        }
        const r = spawnSync("/bin/sh", ["-c", renderAgentKeygenScript({ ...host.u, hostPath: `${dir}:${host.u.hostPath}`, commonName: AGENT_CN })], { encoding: "utf8" });
        expect(r.status).not.toBe(0);
        expect(r.stderr.trim()).toBe(`vault-rotation: app-a: agent-keygen: refusing host PATH entry ${dir}: ${base} is writable by group or others (mode 777)`);
    });

    it("refuses a PATH entry that is a link to nothing (whoever creates its target decides what runs)", () => {
        const link = path.join(host.root, "dangling-bin");
        fs.symlinkSync(path.join(host.root, "not-yet"), link);
        const r = spawnSync("/bin/sh", ["-c", renderAgentKeygenScript({ ...host.u, hostPath: `${link}:${host.u.hostPath}`, commonName: AGENT_CN })], { encoding: "utf8" });
        expect(r.status).not.toBe(0);
        expect(r.stderr.trim()).toBe(`vault-rotation: app-a: agent-keygen: refusing host PATH entry ${link}: ${link} is a symbolic link to nothing`);
    });

    it("accepts a root-owned directory below the sticky /tmp (no one else can rename it)", () => {
        expect(fs.statSync(path.dirname(host.root)).mode & 0o1002).toBe(0o1002);
        expect(host.runKeygen().status).toBe(0);
    });
});
