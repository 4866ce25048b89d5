import { execFileSync } from "child_process";
import { chainsTo, normalizeSerial, parseCertificate, splitPemCertificates } from "../../../providers/pem";
import { TestPki, type TestCert } from "../../support/tls";

let pki: TestPki;
let root: TestCert;
let intermediate: TestCert;
let foreignIntermediate: TestCert;
let leaf: TestCert;
const notBefore = new Date("2026-01-02T03:04:05Z");
const notAfter = new Date("2027-02-03T04:05:06Z");

beforeAll(() => {
    pki = TestPki.create();
    root = pki.rootCa("Prod Root CA");
    intermediate = pki.issue({ issuer: root, commonName: "Prod Intermediate CA", isCA: true });
    const foreignRoot = pki.rootCa("Other Root CA");
    foreignIntermediate = pki.issue({ issuer: foreignRoot, commonName: "Prod Intermediate CA", isCA: true });
    leaf = pki.issue({
        issuer: intermediate,
        commonName: "app-a.internal",
        dnsNames: ["app-a.internal", "app-a.prod.example.com"],
        ipAddresses: ["10.0.0.7"],
        usage: ["serverAuth", "clientAuth"],
        notBefore,
        notAfter,
    });
});

afterAll(() => pki.cleanup());

test("splitPemCertificates keeps CERTIFICATE blocks in order and drops keys", () => {
    const bundle = `${leaf.keyPem}${leaf.certPem}junk\n${intermediate.certPem}`;
    const blocks = splitPemCertificates(bundle);
    expect(blocks).toHaveLength(2);
    expect(parseCertificate(blocks[0]).subjectCN).toBe("app-a.internal");
    expect(parseCertificate(blocks[1]).subjectCN).toBe("Prod Intermediate CA");
    expect(blocks.join("")).not.toContain("PRIVATE KEY");
    expect(splitPemCertificates("")).toEqual([]);
});

test("parseCertificate reads names, serial, validity, usage and CA flag", () => {
    const parsed = parseCertificate(leaf.certPem);
    const opensslSerial = execFileSync("openssl", ["x509", "-noout", "-serial", "-in", leaf.certFile]).toString().trim().replace(/^serial=/, "");
    expect(parsed).toEqual({
        subjectCN: "app-a.internal",
        issuerCN: "Prod Intermediate CA",
        serial: normalizeSerial(opensslSerial),
        notBefore,
        notAfter,
        sans: ["app-a.internal", "app-a.prod.example.com"],
        extKeyUsage: ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"],
        isCA: false,
    });
    expect(parsed.serial).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2})+$/);
    expect(parseCertificate(intermediate.certPem).isCA).toBe(true);
});

test("normalizeSerial accepts Vault's colon form and plain hex", () => {
    expect(normalizeSerial("3A:1F:09")).toBe("3a:1f:09");
    expect(normalizeSerial("3a1f09")).toBe("3a:1f:09");
    expect(normalizeSerial("a1f")).toBe("0a:1f");
    expect(normalizeSerial("00:8f:01")).toBe("8f:01");
    expect(normalizeSerial("00")).toBe("00");
    expect(() => normalizeSerial("3g:1f")).toThrow("not a certificate serial number");
});

test("chainsTo verifies the signature, not just the issuer name", () => {
    expect(chainsTo(leaf.certPem, intermediate.certPem)).toBe(true);
    expect(chainsTo(intermediate.certPem, root.certPem)).toBe(true);
    // Same CN, other key: the name matches but the signature does not.
    expect(chainsTo(leaf.certPem, foreignIntermediate.certPem)).toBe(false);
    expect(chainsTo(leaf.certPem, root.certPem)).toBe(false);
    expect(chainsTo("not a cert", intermediate.certPem)).toBe(false);
    // Without an authority key id only the names can be compared, and they match:
    // the signature is what rejects the impostor.
    const impostor = pki.issue({ issuer: foreignIntermediate, commonName: "app-a.internal", authorityKeyId: false });
    expect(parseCertificate(impostor.certPem).issuerCN).toBe("Prod Intermediate CA");
    expect(chainsTo(impostor.certPem, intermediate.certPem)).toBe(false);
    expect(chainsTo(impostor.certPem, foreignIntermediate.certPem)).toBe(true);
});
