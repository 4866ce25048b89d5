// The benchmark's stack generator must produce stacks the program accepts.
import * as fs from "fs";
import { validateStackInputs } from "../../config";
import { appName, generateStack } from "../../scripts/lib/generateStack";

describe("generateStack", () => {
    it("produces a valid stack of unique apps, seeding every other one", () => {
        const stack = generateStack(5);
        try {
            const c = stack.config;
            const seed = JSON.parse(c["vault-rotation:kvSeedData"]);
            const { config, listenerCaPem } = validateStackInputs(
                {
                    rotation: JSON.parse(c["vault-rotation:rotation"]),
                    vault: JSON.parse(c["vault-rotation:vault"]),
                    apps: JSON.parse(c["vault-rotation:apps"]),
                    vaultAddress: c["vault:address"],
                    vaultCaCertFile: c["vault:caCertFile"],
                    hasSshPrivateKey: false,
                    kvSeedData: seed,
                },
                (p) => fs.readFileSync(p, "utf8"),
            );
            expect(config.apps.map((a) => a.name)).toEqual(["app-0001", "app-0002", "app-0003", "app-0004", "app-0005"]);
            expect(stack.appNames).toEqual(config.apps.map((a) => a.name));
            expect(new Set(config.apps.map((a) => a.agent.commonName)).size).toBe(5);
            expect(new Set(config.apps.flatMap((a) => a.leaf.allowedDomains)).size).toBe(10);
            expect(config.apps.map((a) => a.kv.seed)).toEqual([true, false, true, false, true]);
            expect(config.apps.every((a) => "local" in a.host && a.kv.access)).toBe(true);
            expect(Object.keys(seed)).toEqual(["app-0001", "app-0003", "app-0005"]);
            expect(listenerCaPem).toContain("-----BEGIN CERTIFICATE-----");
            expect(stack.secretKeys).toEqual(["vault-rotation:kvSeedData"]);
        } finally {
            stack.cleanup();
        }
        expect(fs.existsSync(stack.caFile)).toBe(false);
    });

    it("names apps with four digits and rejects a non-positive count", () => {
        expect(appName(0)).toBe("app-0001");
        expect(appName(199)).toBe("app-0200");
        expect(() => generateStack(0)).toThrow(/positive integer/);
    });
});
