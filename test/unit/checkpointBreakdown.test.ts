// The checkpoint breakdown of `npm run bench:fleet` (scripts/lib/checkpointBreakdown.ts)
// on a small hand-made checkpoint whose every figure can be worked out by hand.
import { checkpointBreakdown, formatBreakdown, typeLabel } from "../../scripts/lib/checkpointBreakdown";

const PROJECT = "urn:pulumi:fleet::vault-rotation::";
const q = (text: string) => Buffer.byteLength(JSON.stringify(text));

/** Two apps: one Command each (the second with a longer stdout), a typed dynamic resource, a plain one, the stack. */
function handMade() {
    const forwarder = 'exports.handler = __f0;\nfunction __f0() {\n  return (function() {\n    with({ exportName: "rotationCheckProvider", method: "create" }) {\n      return () => 1;\n    }\n  }).apply(undefined, undefined).apply(this, arguments);\n}\n';
    const resources = [
        { urn: `${PROJECT}pulumi:pulumi:Stack::vault-rotation-fleet`, custom: false, type: "pulumi:pulumi:Stack", outputs: { apps: { "app-1": { leafSerial: "01" } } } },
        {
            urn: `${PROJECT}command:local:Command::app-1-rotate`,
            custom: true,
            type: "command:local:Command",
            inputs: { create: "x".repeat(100), triggers: ["e1"] },
            outputs: { create: "x".repeat(100), stdout: "y".repeat(300), triggers: ["e1"] },
            dependencies: [`${PROJECT}command:local:Command::app-1-keygen`],
        },
        {
            urn: `${PROJECT}command:local:Command::app-2-rotate`,
            custom: true,
            type: "command:local:Command",
            inputs: { create: "x".repeat(100), triggers: ["e1"] },
            outputs: { create: "x".repeat(100), stdout: "y".repeat(500), triggers: ["e1"] },
        },
        {
            urn: `${PROJECT}pulumi-nodejs:dynamic/vault-rotation:KvSeed::app-1-kv-seed`,
            custom: true,
            type: "pulumi-nodejs:dynamic/vault-rotation:KvSeed",
            inputs: { __provider: "p".repeat(40), path: "secret/app-1" },
            outputs: { __provider: "p".repeat(40), path: "secret/app-1" },
        },
        { urn: `${PROJECT}pulumi-nodejs:dynamic:Resource::app-1-check`, custom: true, type: "pulumi-nodejs:dynamic:Resource", inputs: { __provider: forwarder }, outputs: { __provider: forwarder, ok: true } },
    ];
    const checkpoint = { version: 3, checkpoint: { stack: `${PROJECT}pulumi:pulumi:Stack::vault-rotation-fleet`, latest: { manifest: { time: "2026-01-01T00:00:00Z", magic: "m", version: "v3.274.1" }, resources } } };
    return { checkpoint, forwarder };
}

describe("checkpointBreakdown", () => {
    const { checkpoint, forwarder } = handMade();
    const b = checkpointBreakdown(JSON.stringify(checkpoint, null, 4), 2);

    it("measures the whole checkpoint as compact JSON and counts its resources", () => {
        expect(b.totalBytes).toBe(JSON.stringify(checkpoint).length);
        expect(b.resources).toBe(5);
        expect(b.apps).toBe(2);
        // The same from the parsed object as from the (indented) file text.
        expect(checkpointBreakdown(checkpoint, 2)).toEqual(b);
    });

    it("splits by type, largest first, and a plain dynamic resource by the implementation its forwarder names", () => {
        expect(b.types.map((t) => t.type)).toEqual([
            "command:local:Command",
            "pulumi-nodejs:dynamic:Resource (rotationCheckProvider)",
            "pulumi-nodejs:dynamic/vault-rotation:KvSeed",
            "pulumi:pulumi:Stack",
        ]);
        const command = b.types[0];
        expect(command.resources).toBe(2);
        expect(command.resourcesPerApp).toBe(1);
        expect(command.sides.inputs.bytes).toBe(2 * (q("x".repeat(100)) + JSON.stringify(["e1"]).length));
        expect(command.sides.outputs.properties.map((p) => [p.property, p.bytes])).toEqual([
            ["stdout", q("y".repeat(300)) + q("y".repeat(500))],
            ["create", 2 * q("x".repeat(100))],
            ["triggers", 2 * JSON.stringify(["e1"]).length],
        ]);
        expect(command.sides.outputs.properties[0].perApp).toBe((302 + 502) / 2);
        // The rest of the entry: urn, custom, type, dependencies.
        expect(command.sides.other.properties.find((p) => p.property === "dependencies")?.bytes).toBe(JSON.stringify([`${PROJECT}command:local:Command::app-1-keygen`]).length);
        const check = b.types[1];
        expect(check.sides.inputs.properties).toEqual([{ property: "__provider", bytes: q(forwarder), perApp: q(forwarder) / 2, share: q(forwarder) / b.totalBytes }]);
    });

    it("accounts for every byte: the types' sides, the array's commas and what is outside the resource entries", () => {
        const sum = b.types.reduce((n, t) => n + t.sides.inputs.bytes + t.sides.outputs.bytes + t.sides.other.bytes, 0);
        // An entry's fields alone are its JSON minus the braces, the keys and the separators; so compare per entry.
        const entries = checkpoint.checkpoint.latest.resources.reduce((n, r) => n + JSON.stringify(r).length, 0);
        expect(sum).toBeLessThan(entries);
        const outside = JSON.stringify({ ...checkpoint, checkpoint: { ...checkpoint.checkpoint, latest: { ...checkpoint.checkpoint.latest, resources: [] } } }).length;
        expect(b.outsideResources).toBe(outside);
        expect(b.types.reduce((n, t) => n + t.share, 0)).toBeLessThan(1);
        expect(b.types.every((t) => t.share === t.bytes / b.totalBytes)).toBe(true);
    });

    it("sums each property over the types and names the largest single values", () => {
        expect(q(forwarder)).toBeLessThan(302);
        expect(b.properties.slice(0, 4).map((p) => [`${p.side}.${p.property}`, p.bytes])).toEqual([
            ["outputs.stdout", 302 + 502],
            ["other.urn", checkpoint.checkpoint.latest.resources.reduce((n, r) => n + q(r.urn), 0)],
            ["inputs.__provider", q(forwarder) + q("p".repeat(40))],
            ["outputs.__provider", q(forwarder) + q("p".repeat(40))],
        ]);
        // Copies of one size in one type fold: a command's script in inputs and outputs, the same step of both apps.
        expect(b.largest.slice(0, 4).map((v) => `${v.sides.map((side) => `${side}.${v.property}`).join("+")} ${v.bytes} x${v.copies} ${v.resources.join(",")}`)).toEqual([
            "outputs.stdout 502 x1 app-2-rotate",
            "outputs.stdout 302 x1 app-1-rotate",
            `inputs.__provider+outputs.__provider ${q(forwarder)} x2 app-1-check`,
            "inputs.create+outputs.create 102 x4 app-1-rotate,app-2-rotate",
        ]);
        expect(b.largest).toHaveLength(10);
        expect(checkpointBreakdown(checkpoint, 2, { topValues: 3 }).largest).toHaveLength(3);
    });

    it("formats the tables with bytes per app, shares and each type's largest properties", () => {
        const text = formatBreakdown(b);
        const share = (bytes: number) => `${((bytes / b.totalBytes) * 100).toFixed(1)} %`;
        const command = b.types[0];
        expect(text).toContain(
            `| command:local:Command | 1.00 | ${command.sides.inputs.perApp} | ${command.sides.outputs.perApp} | ${Math.round(command.sides.other.perApp)} | ${Math.round(command.perApp)} | ${share(command.bytes)} | outputs.stdout 402, inputs.create 102, outputs.create 102 |`,
        );
        expect(text).toContain(`| command:local:Command | outputs.stdout | 402 | ${share(804)} |`);
        expect(text).toContain("| outputs.stdout | command:local:Command | 502 | 1 | app-2-rotate |");
        expect(text).toContain("| inputs.create, outputs.create | command:local:Command | 102 | 4 | app-1-rotate, app-2-rotate |");
        expect(formatBreakdown(b, { rows: 2 })).toContain("by resource type and property (the largest 2 of ");
    });

    it("refuses what is not a checkpoint, and a non-positive app count", () => {
        expect(() => checkpointBreakdown({ version: 3 }, 2)).toThrow(/not a checkpoint/);
        expect(() => checkpointBreakdown(checkpoint, 0)).toThrow(/positive integer/);
    });

    it("leaves a dynamic resource whose provider names no implementation as it is", () => {
        expect(typeLabel({ type: "pulumi-nodejs:dynamic:Resource", inputs: { __provider: "exports.handler = __f0;" } })).toBe("pulumi-nodejs:dynamic:Resource");
        expect(typeLabel({ type: "vault:index/policy:Policy" })).toBe("vault:index/policy:Policy");
    });
});
