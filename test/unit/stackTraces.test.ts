// Each resource's stored stack keeps this program's own frames only (components/stackTraces.ts).
import * as pulumi from "@pulumi/pulumi";
import { KEPT_FRAMES, ownFrames, trimResourceStackTraces } from "../../components/stackTraces";

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
