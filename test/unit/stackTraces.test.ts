// Each resource's stored stack keeps this program's own frames only (components/stackTraces.ts).
import * as pulumi from "@pulumi/pulumi";
import { KEPT_FRAMES, ownFrames, skipPromiseDebugStacks, trimResourceStackTraces } from "../../components/stackTraces";

const frame = (uri: string, line = 1) => ({ uri, line, column: 2 });

it("keeps the program's frames, innermost first, at most KEPT_FRAMES, and drops node_modules and unknown ones", () => {
    const frames = [
        frame("file:///p/node_modules/@pulumi/command/local/command.js"),
        frame("file:///p/components/hostCommand.ts", 70),
        undefined,
        frame("file:///p/components/appLeaf.ts", 173),
        frame("file:///p/node_modules/ts-node/dist/index.js"),
        frame("file:///p/components/appRotation.ts", 200),
        frame("file:///p/index.ts", 120),
        frame("file:///p/index.ts", 121),
    ];
    expect(ownFrames(frames)).toEqual([frames[1], frames[3], frames[5], frames[6]]);
    expect(KEPT_FRAMES).toBe(4);
});

it("wraps the SDK's stack capture (a renamed private method would show here), once", () => {
    expect(trimResourceStackTraces()).toBe(true);
    expect(trimResourceStackTraces()).toBe(true);
    const capture = (pulumi.Resource as unknown as { stackTrace: (skip: number) => ({ uri: string } | undefined)[] }).stackTrace;
    const frames = capture.call(pulumi.Resource, 0);
    expect(frames.length).toBeGreaterThan(0);
    expect(frames.length).toBeLessThanOrEqual(KEPT_FRAMES);
    expect(frames.every((f) => f !== undefined && !f.uri.includes("/node_modules/"))).toBe(true);
    expect(frames[0]!.uri).toContain("stackTraces");
});

describe("skipPromiseDebugStacks", () => {
    const debuggable = require("@pulumi/pulumi/runtime/debuggable") as { debuggablePromise: (p: Promise<unknown>, ctx: unknown) => Promise<unknown>; debugPromiseLeaks: boolean };
    const tagOf = (p: unknown) => (p as { _debugStackTrace?: string; _debugCtx?: string });

    it("leaves the SDK's promise stacks alone when PULUMI_DEBUG_PROMISE_LEAKS asks for them", () => {
        const before = debuggable.debuggablePromise;
        debuggable.debugPromiseLeaks = true;
        try {
            expect(skipPromiseDebugStacks()).toBe(false);
            expect(debuggable.debuggablePromise).toBe(before);
            const p = Promise.resolve(1);
            void debuggable.debuggablePromise(p, "ctx");
            expect(tagOf(p)._debugStackTrace).toMatch(/\n\s+at /);
        } finally {
            debuggable.debugPromiseLeaks = false;
        }
    });

    it("tags the promises of a real resource registration with their context but no stack frames, once, and restores the limit", async () => {
        await pulumi.runtime.setMocks({ newResource: (a) => ({ id: `${a.name}-id`, state: a.inputs }), call: (a) => a.inputs });
        expect(skipPromiseDebugStacks()).toBe(true);
        const wrapped = debuggable.debuggablePromise;
        expect(skipPromiseDebugStacks()).toBe(true);
        expect(debuggable.debuggablePromise).toBe(wrapped);
        const limit = Error.stackTraceLimit;
        // The SDK's own modules call it through their module object: a resource's properties are tagged by the wrapper.
        class Thing extends pulumi.CustomResource {}
        const resource = new Thing("test:index:Thing", "thing", { colour: "blue" }) as unknown as { colour: pulumi.Output<string> };
        // The tagged promises are the SDK's leak candidates until they settle.
        const candidates = [...(require("@pulumi/pulumi/runtime/state") as { getStore: () => { leakCandidates: Set<Promise<unknown>> } }).getStore().leakCandidates];
        const colour = candidates.filter((p) => String(tagOf(p)._debugCtx).includes("colour"));
        expect(colour.length).toBeGreaterThanOrEqual(4);
        for (const p of colour) expect(tagOf(p)._debugStackTrace).not.toMatch(/\n\s+at /);
        expect(Error.stackTraceLimit).toBe(limit);
        expect(await new Promise((resolve) => resource.colour.apply(resolve))).toBe("blue");
        // Errors the program makes itself keep their stacks.
        expect(new Error("mine").stack).toMatch(/\n\s+at /);
    });
});
