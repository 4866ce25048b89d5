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

type DebuggablePromiseFn = (<T>(p: Promise<T>, ctx: unknown) => Promise<T>) & { withoutStack?: true };

/**
 * The SDK tags every promise it makes (four per input property of every
 * resource, and more per registration) with `new Error().stack`, formatted at
 * once; with the source maps that ts-node and the SDK's entry point install,
 * every frame is mapped, and that was half of this program's CPU while it is
 * evaluated (a preview, an update: 16 of 33 s at 30 apps, `node --cpu-prof`,
 * issue 21). The stack is read only by the SDK's promise-leak report, printed
 * when PULUMI_DEBUG_PROMISE_LEAKS is set: then nothing is changed. Otherwise
 * each tag is made with Error.stackTraceLimit = 0, an empty stack (the tag's
 * context, resource and property, is kept as it was).
 *
 * `runtime/debuggable` is internal to @pulumi/pulumi; when a release moves it or
 * makes the export read-only, nothing is patched and nothing fails (only the speed
 * changes; a unit test notices). Returns whether the stacks are skipped.
 */
export function skipPromiseDebugStacks(): boolean {
    let debuggable: { debuggablePromise?: DebuggablePromiseFn; debugPromiseLeaks?: boolean };
    try {
        debuggable = require("@pulumi/pulumi/runtime/debuggable") as typeof debuggable;
    } catch {
        return false;
    }
    const original = debuggable.debuggablePromise;
    if (typeof original !== "function" || debuggable.debugPromiseLeaks === true) return false;
    if (original.withoutStack) return true;
    const withoutStack = Object.assign(
        <T>(p: Promise<T>, ctx: unknown): Promise<T> => {
            const limit = Error.stackTraceLimit;
            Error.stackTraceLimit = 0;
            try {
                return original(p, ctx);
            } finally {
                Error.stackTraceLimit = limit;
            }
        },
        { withoutStack: true as const },
    );
    try {
        debuggable.debuggablePromise = withoutStack;
    } catch {
        return false;
    }
    return debuggable.debuggablePromise === withoutStack;
}
