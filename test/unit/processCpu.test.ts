import { spawn } from "child_process";
import { cpuByKind, processKind, ProcessCpuSampler } from "../../scripts/lib/processCpu";

describe("processKind", () => {
    it("names the processes of a Pulumi run from their command lines", () => {
        expect(processKind(["/root/.cache/vault-rotation/pulumi/bin/pulumi", "preview", "--stack", "fleet"])).toBe("CLI");
        expect(processKind(["/root/.pulumi/plugins/resource-vault-v7.7.0/pulumi-resource-vault", "127.0.0.1:4000"])).toBe("vault plugin");
        expect(processKind(["/x/pulumi-resource-command", "127.0.0.1:4000"])).toBe("command plugin");
        expect(processKind(["/x/pulumi-language-nodejs", "127.0.0.1:4000", "."])).toBe("language host");
        expect(processKind(["/usr/bin/node", "/p/node_modules/@pulumi/pulumi/cmd/run", "--monitor", "x"])).toBe("program (node)");
        expect(processKind(["node", "/p/node_modules/@pulumi/pulumi/cmd/dynamic-provider", "127.0.0.1:1"])).toBe("dynamic providers (node)");
        expect(processKind(["node", "/p/node_modules/@pulumi/pulumi/cmd/run-policy-pack", "x"])).toBe("node (other)");
        expect(processKind(["/bin/bash", "-c", "true"])).toBe("other: bash");
    });
});

describe("ProcessCpuSampler", () => {
    it("counts a descendant's own CPU, and a reaped short child in its parent's children", async () => {
        // sh runs a short busy node and then a longer one; each spins until it has used that much CPU
        // (not wall time: the machine may be busy).
        const busy = (ms: number) => `node -e 'while (process.cpuUsage().user < ${ms * 1000}) {}'`;
        const child = spawn("sh", ["-c", `${busy(300)}; ${busy(900)}`], { stdio: "ignore" });
        const sampler = new ProcessCpuSampler(child.pid!, 50).start();
        await new Promise<void>((resolve) => child.on("exit", () => resolve()));
        const seen = sampler.stop();
        const nodes = seen.filter((p) => p.kind === "node (other)");
        expect(nodes.length).toBeGreaterThanOrEqual(1);
        // The 900 ms busy loop is sampled every 50 ms: at least most of it is seen.
        expect(Math.max(...nodes.map((p) => p.seconds))).toBeGreaterThan(0.5);
        const sh = seen.find((p) => p.pid === child.pid)!;
        expect(sh.kind).toBe("other: sh");
        // By the last sample of sh (while the second node runs), the first node has been reaped into sh's children.
        expect(sh.childrenSeconds).toBeGreaterThan(0.15);
        const byKind = cpuByKind(seen);
        expect(byKind[0].kind).toBe("node (other)");
        expect(byKind.find((k) => k.kind === "other: sh")!.processes).toBe(1);
    });
});
