import { placeOf, summarizeProfile } from "../../scripts/lib/cpuProfile";

const frame = (functionName: string, url: string, lineNumber = 0) => ({ functionName, url, lineNumber });

describe("placeOf", () => {
    it("names a package, a file of the repository, node's internals, gc and idle", () => {
        expect(placeOf("file:///r/node_modules/@pulumi/pulumi/runtime/rpc.js", "f", "/r")).toBe("node_modules/@pulumi/pulumi");
        expect(placeOf("file:///r/node_modules/ts-node/node_modules/diff/lib/index.js", "f", "/r")).toBe("node_modules/diff");
        expect(placeOf("/r/node_modules/typescript/lib/typescript.js", "f", "/r")).toBe("node_modules/typescript");
        expect(placeOf("file:///r/components/appLeaf.ts", "f", "/r")).toBe("components/appLeaf.ts");
        expect(placeOf("file:///elsewhere/x.js", "f", "/r")).toBe("/elsewhere/x.js");
        expect(placeOf("node:internal/url", "f", "/r")).toBe("node:internal");
        expect(placeOf("", "(garbage collector)", "/r")).toBe("(gc)");
        expect(placeOf("", "(idle)", "/r")).toBe("(idle)");
    });
});

describe("summarizeProfile", () => {
    it("adds self time per sample's node, keeps idle apart, and sorts largest first", () => {
        const profile = {
            nodes: [
                { id: 1, callFrame: frame("(root)", ""), children: [2, 3, 4] },
                { id: 2, callFrame: frame("(idle)", "") },
                { id: 3, callFrame: frame("transferProperties", "file:///r/node_modules/@pulumi/pulumi/runtime/rpc.js", 59) },
                { id: 4, callFrame: frame("", "file:///r/index.ts", 9) },
            ],
            samples: [2, 3, 3, 4, 2, 3],
            timeDeltas: [500_000, 100_000, 200_000, 50_000, 500_000, 300_000],
        };
        const s = summarizeProfile(profile, "/r");
        expect(s.totalSeconds).toBeCloseTo(1.65);
        expect(s.idleSeconds).toBeCloseTo(1.0);
        expect(s.byPlace).toEqual([
            { place: "node_modules/@pulumi/pulumi", seconds: expect.closeTo(0.6) },
            { place: "index.ts", seconds: expect.closeTo(0.05) },
        ]);
        expect(s.byFunction[0]).toEqual({ fn: "transferProperties node_modules/@pulumi/pulumi:60", seconds: expect.closeTo(0.6) });
        expect(s.byFunction[1].fn).toBe("(anonymous) index.ts:10");
    });
});
