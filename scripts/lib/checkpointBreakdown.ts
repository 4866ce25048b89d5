// Where a checkpoint's bytes go: the file backend's `.pulumi/stacks/<project>/<stack>.json`
// split by resource type, by side (`inputs`, `outputs`, the rest of the resource
// entry: urn, dependencies, propertyDependencies, ...) and by top-level property,
// each divided by the stack's app count. Pure: text or parsed JSON in, figures out.
//
// Bytes are the UTF-8 length of JSON.stringify(value), compact, as the file
// backend writes it (so the whole checkpoint's figure is the file's size).
// Shares are of JSON.stringify(the whole checkpoint).
//
// Dynamic resources of this program carry their own type
// (`pulumi-nodejs:dynamic/vault-rotation:KvSeed`); a plain
// `pulumi-nodejs:dynamic:Resource` is told apart, where it can be, by the
// implementation its serialized forwarder names (`exportName: "..."` in
// `__provider`), as `pulumi-nodejs:dynamic:Resource (<name>)`.

export type Side = "inputs" | "outputs" | "other";

export interface PropertyBytes {
    property: string;
    bytes: number;
    /** bytes / apps */
    perApp: number;
    /** bytes / the whole checkpoint's bytes */
    share: number;
}

export interface SideBytes {
    bytes: number;
    perApp: number;
    share: number;
    /** Every top-level property of this side over all resources of the type, largest first. */
    properties: PropertyBytes[];
}

export interface TypeBreakdown {
    /** The resource type, dynamic ones split by implementation where it can be told. */
    type: string;
    resources: number;
    /** resources / apps */
    resourcesPerApp: number;
    bytes: number;
    perApp: number;
    share: number;
    sides: Record<Side, SideBytes>;
}

/**
 * One size of single value: copies of the same property with the same byte count in
 * resources of one type (the inputs and outputs copy of a command's script, the same
 * step of every app) fold into one entry.
 */
export interface LargestValue {
    type: string;
    property: string;
    /** The sides it is on (`inputs` and `outputs` for a copied input). */
    sides: Side[];
    /** The resources holding a copy (URN names), in checkpoint order. */
    resources: string[];
    /** Bytes of one copy. */
    bytes: number;
    /** How many values were folded into this entry (one per resource and side). */
    copies: number;
}

export interface CheckpointBreakdown {
    apps: number;
    /** JSON.stringify(the whole checkpoint), UTF-8 bytes. */
    totalBytes: number;
    /** Resources in `checkpoint.latest.resources`. */
    resources: number;
    /** Every resource type, largest first. */
    types: TypeBreakdown[];
    /** One side's property over every type (`outputs.stdout`), largest first. */
    properties: (PropertyBytes & { side: Side })[];
    /** What is not a resource entry (manifest, secrets provider, the wrapping keys), in bytes. */
    outsideResources: number;
    /** The largest single values (inputs and outputs properties, the entries' other fields), same-size copies folded, largest first. */
    largest: LargestValue[];
}

interface CheckpointResource {
    urn?: string;
    type?: string;
    inputs?: Record<string, unknown>;
    outputs?: Record<string, unknown>;
    [field: string]: unknown;
}

function byteLength(value: unknown): number {
    const text = JSON.stringify(value);
    return text === undefined ? 0 : Buffer.byteLength(text, "utf8");
}

const DYNAMIC = "pulumi-nodejs:dynamic:Resource";

/** The type as the tables show it (a plain dynamic resource with the implementation its forwarder names). */
export function typeLabel(r: CheckpointResource): string {
    const type = typeof r.type === "string" ? r.type : "(no type)";
    if (type !== DYNAMIC) return type;
    const provider = r.outputs?.__provider ?? r.inputs?.__provider;
    const text = typeof provider === "string" ? provider : JSON.stringify(provider ?? "");
    const named = /exportName\s*[:=]\s*\\?"([A-Za-z0-9_$]+)\\?"/.exec(text);
    return named ? `${DYNAMIC} (${named[1]})` : type;
}

function resourcesOf(checkpoint: unknown): CheckpointResource[] {
    const c = checkpoint as { checkpoint?: { latest?: { resources?: unknown } }; latest?: { resources?: unknown } } | null;
    // The file backend wraps the deployment as {version, checkpoint: {stack, latest}}; `pulumi stack export` gives {version, deployment}.
    const latest = c?.checkpoint?.latest ?? c?.latest ?? (c as { deployment?: { resources?: unknown } } | null)?.deployment;
    const resources = (latest as { resources?: unknown } | undefined)?.resources;
    if (!Array.isArray(resources)) throw new Error("not a checkpoint: no checkpoint.latest.resources array");
    return resources as CheckpointResource[];
}

/**
 * The breakdown of a checkpoint (its file's text, or the parsed JSON) of a
 * stack of `apps` apps. `largest` keeps the top `topValues` values, copies folded (default 10).
 */
export function checkpointBreakdown(checkpointJson: string | object, apps: number, opts: { topValues?: number } = {}): CheckpointBreakdown {
    if (!Number.isInteger(apps) || apps < 1) throw new Error(`apps must be a positive integer (got ${apps})`);
    const parsed: unknown = typeof checkpointJson === "string" ? JSON.parse(checkpointJson) : checkpointJson;
    const resources = resourcesOf(parsed);
    const totalBytes = byteLength(parsed);
    const share = (bytes: number) => (totalBytes === 0 ? 0 : bytes / totalBytes);

    type Acc = { resources: number; sides: Record<Side, Map<string, number>> };
    const acc = new Map<string, Acc>();
    const overall = new Map<string, { side: Side; property: string; bytes: number }>();
    const values = new Map<string, LargestValue>();
    let resourceBytes = 0;

    for (const r of resources) {
        const type = typeLabel(r);
        let a = acc.get(type);
        if (!a) {
            a = { resources: 0, sides: { inputs: new Map(), outputs: new Map(), other: new Map() } };
            acc.set(type, a);
        }
        a.resources++;
        resourceBytes += byteLength(r);
        const name = typeof r.urn === "string" ? (r.urn.split("::").pop() ?? r.urn) : "(no urn)";
        const add = (side: Side, property: string, bytes: number) => {
            a.sides[side].set(property, (a.sides[side].get(property) ?? 0) + bytes);
            const key = `${side}.${property}`;
            const o = overall.get(key) ?? { side, property, bytes: 0 };
            o.bytes += bytes;
            overall.set(key, o);
            const sized = JSON.stringify([type, property, bytes]);
            const v = values.get(sized) ?? { type, property, sides: [], resources: [], bytes, copies: 0 };
            if (!v.sides.includes(side)) v.sides.push(side);
            if (!v.resources.includes(name)) v.resources.push(name);
            v.copies++;
            values.set(sized, v);
        };
        for (const side of ["inputs", "outputs"] as const) {
            const props = r[side];
            if (props === undefined || props === null || typeof props !== "object") continue;
            for (const [property, value] of Object.entries(props)) add(side, property, byteLength(value));
        }
        for (const [field, value] of Object.entries(r)) {
            if (field === "inputs" || field === "outputs") continue;
            add("other", field, byteLength(value));
        }
    }

    const sideOf = (m: Map<string, number>): SideBytes => {
        const properties = [...m.entries()]
            .map(([property, bytes]) => ({ property, bytes, perApp: bytes / apps, share: share(bytes) }))
            .sort((x, y) => y.bytes - x.bytes || x.property.localeCompare(y.property));
        const bytes = properties.reduce((n, p) => n + p.bytes, 0);
        return { bytes, perApp: bytes / apps, share: share(bytes), properties };
    };
    const types: TypeBreakdown[] = [...acc.entries()]
        .map(([type, a]) => {
            const sides = { inputs: sideOf(a.sides.inputs), outputs: sideOf(a.sides.outputs), other: sideOf(a.sides.other) };
            const bytes = sides.inputs.bytes + sides.outputs.bytes + sides.other.bytes;
            return { type, resources: a.resources, resourcesPerApp: a.resources / apps, bytes, perApp: bytes / apps, share: share(bytes), sides };
        })
        .sort((x, y) => y.bytes - x.bytes || x.type.localeCompare(y.type));
    const properties = [...overall.values()]
        .map((p) => ({ ...p, perApp: p.bytes / apps, share: share(p.bytes) }))
        .sort((x, y) => y.bytes - x.bytes || `${x.side}.${x.property}`.localeCompare(`${y.side}.${y.property}`));
    const largest = [...values.values()]
        .sort((x, y) => y.bytes - x.bytes || y.copies - x.copies || `${x.type} ${x.property}`.localeCompare(`${y.type} ${y.property}`))
        .slice(0, opts.topValues ?? 10);

    // Entries' bytes without the commas that separate them in the array: what the rest of the file is.
    const separators = Math.max(0, resources.length - 1);
    return { apps, totalBytes, resources: resources.length, types, properties, outsideResources: totalBytes - resourceBytes - separators, largest };
}

const int = (n: number) => Math.round(n).toLocaleString("en-US");
const pct = (s: number) => `${(s * 100).toFixed(1)} %`;

/**
 * The breakdown as markdown tables: the resource types (largest first) with their
 * inputs, outputs and other fields and their `perType` largest properties; the
 * largest `rows` (type, property) pairs; every property over all types; the
 * largest single values.
 */
export function formatBreakdown(b: CheckpointBreakdown, opts: { perType?: number; rows?: number; properties?: number } = {}): string {
    const perType = opts.perType ?? 3;
    const lines: string[] = [];
    lines.push(`checkpoint: ${int(b.totalBytes)} bytes (compact JSON), ${b.resources} resources, ${b.apps} apps; every figure is bytes / ${b.apps} (per app)`);
    lines.push("");
    lines.push("| resource type | resources per app | inputs | outputs | other fields | total | share | largest properties |");
    lines.push("|---|---|---|---|---|---|---|---|");
    const pairs: { type: string; side: Side; p: PropertyBytes }[] = [];
    for (const t of b.types) {
        const props = (["inputs", "outputs", "other"] as const).flatMap((side) => t.sides[side].properties.map((p) => ({ type: t.type, side, p })));
        pairs.push(...props);
        const top = props
            .sort((x, y) => y.p.bytes - x.p.bytes)
            .slice(0, perType)
            .map((x) => `${x.side}.${x.p.property} ${int(x.p.perApp)}`)
            .join(", ");
        lines.push(`| ${t.type} | ${t.resourcesPerApp.toFixed(2)} | ${int(t.sides.inputs.perApp)} | ${int(t.sides.outputs.perApp)} | ${int(t.sides.other.perApp)} | ${int(t.perApp)} | ${pct(t.share)} | ${top} |`);
    }
    lines.push(`| (outside the resource entries: manifest, secrets provider) | | | | | ${int(b.outsideResources / b.apps)} | ${pct(b.outsideResources / b.totalBytes)} | |`);
    lines.push("");
    const rows = opts.rows ?? 20;
    lines.push(`by resource type and property (the largest ${Math.min(rows, pairs.length)} of ${pairs.length}):`);
    lines.push("");
    lines.push("| resource type | property | bytes per app | share |");
    lines.push("|---|---|---|---|");
    for (const x of pairs.sort((x, y) => y.p.bytes - x.p.bytes || `${x.type} ${x.side}.${x.p.property}`.localeCompare(`${y.type} ${y.side}.${y.p.property}`)).slice(0, rows)) {
        lines.push(`| ${x.type} | ${x.side}.${x.p.property} | ${int(x.p.perApp)} | ${pct(x.p.share)} |`);
    }
    lines.push("");
    lines.push("| property, over all resource types | bytes per app | share |");
    lines.push("|---|---|---|");
    for (const p of b.properties.slice(0, opts.properties ?? 12)) lines.push(`| ${p.side}.${p.property} | ${int(p.perApp)} | ${pct(p.share)} |`);
    lines.push("");
    lines.push(`largest single values (top ${b.largest.length}; copies of the same size in resources of one type folded):`);
    lines.push("");
    lines.push("| property | type | bytes of one copy | copies | held by |");
    lines.push("|---|---|---|---|---|");
    for (const v of b.largest) {
        const held = v.resources.length > 3 ? `${v.resources.slice(0, 3).join(", ")} and ${v.resources.length - 3} more` : v.resources.join(", ");
        lines.push(`| ${v.sides.map((side) => `${side}.${v.property}`).join(", ")} | ${v.type} | ${int(v.bytes)} | ${v.copies} | ${held} |`);
    }
    return lines.join("\n");
}
