// Linux /proc, read for what the engine driver and the benchmarks need of a
// process: its parent, its CPU times and its start time (which, with the pid,
// names one process even after the pid is reused).
import * as fs from "fs";

export interface ProcStat {
    ppid: number;
    /** utime + stime, in clock ticks. */
    ticks: number;
    /** cutime + cstime (the children it waited for), in clock ticks. */
    childTicks: number;
    /** starttime, in clock ticks since boot, as text. */
    start: string;
}

/** The pids in /proc now. */
export function listPids(): number[] {
    return fs
        .readdirSync("/proc")
        .filter((name) => /^\d+$/.test(name))
        .map(Number);
}

/** /proc/<pid>/stat, or undefined when the process is gone. */
export function readProcStat(pid: number): ProcStat | undefined {
    let text: string;
    try {
        text = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    } catch {
        return undefined;
    }
    // The command name is in parentheses and may contain spaces: fields start after the last ')'.
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    // f[0] is field 3 (state): ppid is field 4, utime..cstime fields 14-17, starttime field 22.
    return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]), childTicks: Number(f[13]) + Number(f[14]), start: f[19] };
}
