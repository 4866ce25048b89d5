// A V8 CPU profile (`node --cpu-prof`, the .cpuprofile JSON) summarized: where
// the sampled time went, by function (self time) and by package or file of
// this repository. Pure: the parsed profile in, figures out. A benchmark's
// instrument (bench:fleet --cpu-prof), not a test.

interface CallFrame {
    functionName: string;
    url: string;
    lineNumber: number;
}

interface ProfileNode {
    id: number;
    callFrame: CallFrame;
    children?: number[];
}

export interface CpuProfile {
    nodes: ProfileNode[];
    samples: number[];
    timeDeltas: number[];
}

export interface ProfileSummary {
    /** Sampled seconds, idle included. */
    totalSeconds: number;
    /** Seconds V8 reported as idle (the process waiting for I/O, gRPC answers, timers). */
    idleSeconds: number;
    /** Self seconds by where the code lives: `node_modules/<package>`, a file of this repository, `node:internal`, `(gc)`. */
    byPlace: { place: string; seconds: number }[];
    /** Self seconds by function, largest first. */
    byFunction: { fn: string; seconds: number }[];
}

/** Where a frame's code lives: the package under node_modules, else the file relative to `root`. */
export function placeOf(url: string, functionName: string, root: string): string {
    if (url === "") return functionName === "(garbage collector)" ? "(gc)" : functionName === "(idle)" ? "(idle)" : "(native)";
    if (url.startsWith("node:")) return "node:internal";
    const file = url.replace(/^file:\/\//, "");
    const nm = file.lastIndexOf("/node_modules/");
    if (nm >= 0) {
        const parts = file.slice(nm + "/node_modules/".length).split("/");
        return `node_modules/${parts[0].startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0]}`;
    }
    return file.startsWith(`${root}/`) ? file.slice(root.length + 1) : file;
}

export function summarizeProfile(profile: CpuProfile, root: string, top = 12): ProfileSummary {
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const selfMicros = new Map<number, number>();
    let total = 0;
    profile.samples.forEach((id, i) => {
        const dt = profile.timeDeltas[i] ?? 0;
        selfMicros.set(id, (selfMicros.get(id) ?? 0) + dt);
        total += dt;
    });
    const places = new Map<string, number>();
    const fns = new Map<string, number>();
    let idle = 0;
    for (const [id, micros] of selfMicros) {
        const f = byId.get(id)!.callFrame;
        const place = placeOf(f.url, f.functionName, root);
        if (place === "(idle)") {
            idle += micros;
            continue;
        }
        places.set(place, (places.get(place) ?? 0) + micros);
        const fn = `${f.functionName || "(anonymous)"} ${place}${f.url ? `:${f.lineNumber + 1}` : ""}`;
        fns.set(fn, (fns.get(fn) ?? 0) + micros);
    }
    const sorted = <K extends string>(m: Map<string, number>, key: K) =>
        [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, v]) => ({ [key]: k, seconds: v / 1e6 }) as { [P in K]: string } & { seconds: number });
    return { totalSeconds: total / 1e6, idleSeconds: idle / 1e6, byPlace: sorted(places, "place"), byFunction: sorted(fns, "fn") };
}

export function formatProfileSummary(s: ProfileSummary): string {
    const busy = s.totalSeconds - s.idleSeconds;
    const lines = [`${s.totalSeconds.toFixed(1)} s sampled, ${busy.toFixed(1)} s busy`, "  by place (self):"];
    for (const p of s.byPlace) lines.push(`    ${p.seconds.toFixed(2).padStart(6)} s  ${p.place}`);
    lines.push("  by function (self):");
    for (const f of s.byFunction) lines.push(`    ${f.seconds.toFixed(2).padStart(6)} s  ${f.fn}`);
    return lines.join("\n");
}
