// Where a CLI run's CPU goes, process by process: samples /proc every few hundred
// milliseconds for the descendants of one process (the Pulumi CLI) and keeps, for
// each process seen, its last user+system CPU time and the CPU of the children it
// waited for (a plugin's host steps, bash and what it runs, show up there). Linux
// only; a benchmark's instrument, not a test.
//
// Sampling misses a process that starts and ends between two samples, and the last
// interval of one that ends; both go to its parent's waited-for children when the
// parent reaps it, which is why those are reported apart ("children").
import { execFileSync } from "child_process";
import * as fs from "fs";
import { listPids, ProcStat, readProcStat } from "../../test/support/procfs";

export interface ProcessCpu {
    kind: string;
    pid: number;
    /** The process's own user+system CPU seconds, at its last sample. */
    seconds: number;
    /** CPU seconds of the children it waited for, at its last sample. */
    childrenSeconds: number;
}

export interface CpuByKind {
    kind: string;
    processes: number;
    seconds: number;
    childrenSeconds: number;
}

/** What a process of a Pulumi run is, from its command line. */
export function processKind(cmdline: string[]): string {
    const argv0 = cmdline[0] ?? "";
    const all = cmdline.join(" ");
    if (/pulumi-resource-vault\b/.test(all)) return "vault plugin";
    if (/pulumi-resource-command\b/.test(all)) return "command plugin";
    if (/pulumi-resource-pulumi-nodejs|dynamic-provider/.test(all)) return "dynamic providers (node)";
    if (/pulumi-language-nodejs\b/.test(all)) return "language host";
    if (/\bnode\b/.test(argv0) || /(^|\/)node$/.test(argv0)) return /@pulumi\/pulumi\/cmd\/run(\/[\w.]*)?(\s|$)/.test(all) ? "program (node)" : "node (other)";
    if (/(^|\/)pulumi$/.test(argv0)) return "CLI";
    return `other: ${argv0.split("/").pop() ?? argv0}`;
}

function readCmdline(pid: number): string[] {
    try {
        return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter((s) => s !== "");
    } catch {
        return [];
    }
}

export class ProcessCpuSampler {
    private readonly hz = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    private readonly seen = new Map<string, ProcessCpu>();
    private timer: NodeJS.Timeout | undefined;

    constructor(private readonly rootPid: number, private readonly intervalMs = 250) {}

    start(): this {
        this.sample();
        this.timer = setInterval(() => this.sample(), this.intervalMs);
        return this;
    }

    /** Stops sampling; every process seen. */
    stop(): ProcessCpu[] {
        if (this.timer) clearInterval(this.timer);
        this.timer = undefined;
        return [...this.seen.values()];
    }

    private sample(): void {
        const stats = new Map<number, ProcStat>();
        for (const pid of listPids()) {
            const s = readProcStat(pid);
            if (s) stats.set(pid, s);
        }
        const inTree = (pid: number): boolean => {
            for (let p = pid, hops = 0; p > 1 && hops < 64; hops++) {
                if (p === this.rootPid) return true;
                const s = stats.get(p);
                if (!s) return false;
                p = s.ppid;
            }
            return false;
        };
        for (const [pid, s] of stats) {
            if (!inTree(pid)) continue;
            const key = `${pid}/${s.start}`;
            // Read on every sample: a process seen between fork and exec showed its parent's command line.
            const cmdline = readCmdline(pid);
            let entry = this.seen.get(key);
            if (!entry) {
                entry = { kind: processKind(cmdline), pid, seconds: 0, childrenSeconds: 0 };
                this.seen.set(key, entry);
            } else if (cmdline.length > 0) entry.kind = processKind(cmdline);
            entry.seconds = Math.max(entry.seconds, s.ticks / this.hz);
            entry.childrenSeconds = Math.max(entry.childrenSeconds, s.childTicks / this.hz);
        }
    }
}

/** Per kind, largest CPU first. */
export function cpuByKind(processes: ProcessCpu[]): CpuByKind[] {
    const by = new Map<string, CpuByKind>();
    for (const p of processes) {
        const k = by.get(p.kind) ?? { kind: p.kind, processes: 0, seconds: 0, childrenSeconds: 0 };
        k.processes += 1;
        k.seconds += p.seconds;
        k.childrenSeconds += p.childrenSeconds;
        by.set(p.kind, k);
    }
    return [...by.values()].sort((a, b) => b.seconds + b.childrenSeconds - (a.seconds + a.childrenSeconds));
}
