// When the runner's half of a verification runs again: for each new reading of the host or a
// changed expectation, never for a rotation alone (its RotationCheck checked it; the facts in
// state predate it).
import { verificationCheckProvider, verificationFailureMessage, type VerificationCheckInputs } from "../../../providers/verificationCheck";

const base: VerificationCheckInputs = {
    connection: { address: "https://vault.internal:8200" },
    app: "app-a",
    window: "2026-12-01T00:00:00.000Z/24h",
    certAuthPath: "cert",
    mappingName: "agent-app-a",
    expectedPolicies: ["app-a-issue", "default"],
    hostState: "### fullchain\nX\n### read-at\n1796164477\n### end\n",
    leafCommonName: "app-a.internal",
    allowedDomains: ["app-a.internal"],
    issuerCommonName: "Prod Intermediate CA",
    pkiMount: "pki_int",
    minRemainingSeconds: 3600,
    expectedAgentSerial: "0a:01",
    rotationLeafSerial: "0b:01",
};
const diff = (news: Partial<VerificationCheckInputs>) => verificationCheckProvider.diff!("id", base as never, { ...base, ...news });

it("does not check again for a rotation alone, or any other input but a reading of the host: it records the new expectation", async () => {
    expect(await diff({ rotationLeafSerial: "0b:02", expectedAgentSerial: "0a:02" })).toEqual({ changes: true, replaces: [] });
    // A changed expectation reaches the check through a new reading (the verify step's triggers carry it).
    expect(await diff({ serve: { endpoint: "10.0.0.1:8443" } })).toEqual({ changes: true, replaces: [] });
    expect(await diff({})).toEqual({ changes: false, replaces: [] });
    const olds = { ...base, verifiedAt: "2026-12-01T03:00:00.000Z", leafSerial: "0b:01" };
    const updated = await verificationCheckProvider.update!("id", olds as never, { ...base, rotationLeafSerial: "0b:02" });
    expect(updated.outs).toMatchObject({ verifiedAt: "2026-12-01T03:00:00.000Z", leafSerial: "0b:01", rotationLeafSerial: "0b:02" });
});

it("checks again for a new reading of the host or a new window", async () => {
    expect(await diff({ hostState: base.hostState.replace("1796164477", "1796250877") })).toEqual({ changes: true, replaces: ["hostState"] });
    expect(await diff({ window: "2026-12-02T00:00:00.000Z/24h" })).toEqual({ changes: true, replaces: ["window"] });
});

it("says nothing was restarted and what to do, one line per failed item", () => {
    const text = verificationFailureMessage("app-a", ["app-a: agent service: expected active, found inactive", "app-a: leaf is current: expected x, found y"]);
    expect(text.split("\n")).toEqual([
        "vault-rotation: the verification failed for app-a (2 items; nothing was restarted or reloaded):",
        "  app-a: agent service: expected active, found inactive",
        "  app-a: leaf is current: expected x, found y",
        expect.stringMatching(/^What to do: fix the cause above, then re-run `pulumi up` .*journalctl --user -u vault-agent-app-a$/),
    ]);
});
