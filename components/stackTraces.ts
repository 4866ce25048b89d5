// The engine stores, for every resource, the JavaScript stack the SDK captured
// when the resource was declared (all frames, Error.stackTraceLimit = Infinity),
// and prepends its parent component's: ts-node's loader, the SDK's own
// run-and-register frames and the component chain, 1-2 KB per resource and,
// under the file backend, rewritten with the whole checkpoint after every step
// (issue 21). What an operator reads from it (the CLI's "at <file>:<line>", a
// policy violation's location) is this program's own frames: those are kept,
// the ones under node_modules dropped.
//
// `Resource.stackTrace` is private to @pulumi/pulumi; when a release renames it
// nothing is patched and the full trace is stored again (only the size changes).
import * as pulumi from "@pulumi/pulumi";

interface Frame {
    uri: string;
    line: number;
    column: number;
}

type StackTraceFn = (skip: number) => (Frame | undefined)[];

/** At most this many of the program's own frames are kept per resource. */
export const KEPT_FRAMES = 4;

/** The program's own frames (not under node_modules), at most KEPT_FRAMES, innermost first. */
export function ownFrames(frames: readonly (Frame | undefined)[]): (Frame | undefined)[] {
    return frames.filter((f) => f !== undefined && !f.uri.includes("/node_modules/")).slice(0, KEPT_FRAMES);
}

/** Installs the trim once; returns whether the SDK had the method to wrap. */
export function trimResourceStackTraces(): boolean {
    const resource = pulumi.Resource as unknown as { stackTrace?: StackTraceFn & { trimmed?: true } };
    const original = resource.stackTrace;
    if (typeof original !== "function") return false;
    if (original.trimmed) return true;
    const trimmed = Object.assign((skip: number) => ownFrames(original.call(pulumi.Resource, skip)), { trimmed: true as const });
    resource.stackTrace = trimmed;
    return true;
}
