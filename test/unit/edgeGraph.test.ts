// The edge proxy and the served-certificate check in the resource graph (mocks):
// one IssuingChain and one trust-bundle step per stack, run as the edge user;
// each served app's check carries its endpoint and comes after the bundle.
import { evaluateProgram, Evaluation } from "../support/harness";
import { fakeListenerCaFile, threeAppStackObject } from "../support/stacks";
import { flattenConfig } from "../support/harness";
import { resolveStepScript } from "../../components/stepScripts";

const caFile = fakeListenerCaFile();
let e: Evaluation;

beforeAll(async () => {
    const stack = threeAppStackObject(caFile) as Record<string, unknown>;
    const apps = stack["vault-rotation:apps"] as Record<string, unknown>[];
    apps[0].serve = { endpoint: "web.internal:8443" };
    apps[2].serve = { endpoint: "10.1.2.3:9443", edgeHost: "jobs.test.example.com" };
    stack["vault-rotation:edge"] = {
        listen: "edge.internal:443",
        serverName: "edge.test.internal",
        reload: "podman:edge-proxy",
        user: "edge",
        home: "/srv/edge",
        bundle: "/srv/edge/tls/upstream-ca.pem",
        host: { local: true },
    };
    e = await evaluateProgram({ config: flattenConfig(stack), stack: "test" });
});

it("reads the issuing chain once per stack and writes the bundle as the edge user", () => {
    const chain = e.byName.get("edge-issuing-chain")!;
    expect(chain.type).toBe("pulumi-nodejs:dynamic/vault-rotation:IssuingChain");
    expect(chain.inputs.pkiMount).toBe("pki/int");
    const bundle = e.byName.get("edge-trust-bundle")!;
    expect(bundle.type).toBe("command:local:Command");
    const script = resolveStepScript(String(bundle.inputs.create));
    expect(script).toContain("APP_USER='edge'");
    expect(script).toContain("MOCKINTERMEDIATE");
    expect(script).toContain("MOCKROOT");
    expect(bundle.inputs.logging).toBe("stderr");
    expect(bundle.inputs.triggers).toBeUndefined();
    expect(e.registrations.filter((r) => r.type.endsWith(":IssuingChain"))).toHaveLength(1);
});

it("checks served apps at their endpoint and through the edge, after the bundle", () => {
    const web = e.byName.get("web-check")!;
    expect(web.inputs.serve).toEqual({ endpoint: "web.internal:8443", edge: { listen: "edge.internal:443", serverName: "edge.test.internal", host: "web.internal" } });
    expect(web.dependencies).toContain(e.byName.get("edge-trust-bundle")!.urn);
    const jobs = e.byName.get("jobs-check")!;
    expect((jobs.inputs.serve as { edge: { host: string } }).edge.host).toBe("jobs.test.example.com");
    const api = e.byName.get("api-check")!;
    expect(api.inputs.serve).toBeUndefined();
    expect(api.dependencies).not.toContain(e.byName.get("edge-trust-bundle")!.urn);
});
