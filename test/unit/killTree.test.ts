import { spawn } from "child_process";
import * as fs from "fs";
import { killTree } from "../../test/support/engine";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Running (a zombie, killed but not yet reaped, counts as gone). */
const alive = (pid: number) => {
    try {
        return !/^\S+ \(.*\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, "utf8"));
    } catch {
        return false;
    }
};

/** sh in a group of its own starts `sleep` in a new session and group (setsid), as the CLI starts a plugin. */
async function parentWithEscapedChild() {
    const parent = spawn("sh", ["-c", "setsid sleep 300 >/dev/null & echo $!; wait"], { detached: true, stdio: ["ignore", "pipe", "ignore"] });
    const child = Number(await new Promise<string>((resolve) => parent.stdout.once("data", (d: Buffer) => resolve(d.toString().trim()))));
    for (let i = 0; i < 100 && !fs.readFileSync(`/proc/${child}/cmdline`, "utf8").startsWith("sleep"); i++) await sleep(20);
    const closed = new Promise<string | null>((resolve) => parent.on("exit", (_code, signal) => resolve(signal)));
    return { parent, child, closed };
}

async function gone(pid: number): Promise<boolean> {
    for (let i = 0; i < 100 && alive(pid); i++) await sleep(20);
    return !alive(pid);
}

it("a SIGKILL to the parent's group leaves a child that left the group running", async () => {
    const { parent, child, closed } = await parentWithEscapedChild();
    try {
        process.kill(-parent.pid!, "SIGKILL");
        expect(await closed).toBe("SIGKILL");
        await sleep(200);
        expect(alive(child)).toBe(true);
    } finally {
        process.kill(child, "SIGKILL");
    }
});

it("killTree kills the parent, its group and the child that left the group", async () => {
    const { parent, child, closed } = await parentWithEscapedChild();
    try {
        killTree(parent.pid!);
        expect(await closed).toBe("SIGKILL");
        expect(await gone(child)).toBe(true);
    } finally {
        if (alive(child)) process.kill(child, "SIGKILL");
    }
});
