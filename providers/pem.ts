// Pure certificate helpers on Node's X509Certificate, for the rotation check.
// Only public material goes through here: certificates, never keys.
import { X509Certificate } from "crypto";

export interface ParsedCertificate {
    subjectCN: string;
    issuerCN: string;
    /** Lowercase hex bytes joined by ':', the form of Vault's `serial_number`. */
    serial: string;
    notBefore: Date;
    notAfter: Date;
    /** DNS subject alternative names only. */
    sans: string[];
    /** Extended key usage OIDs (e.g. 1.3.6.1.5.5.7.3.1 = serverAuth). */
    extKeyUsage: string[];
    isCA: boolean;
}

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** The CERTIFICATE blocks of a PEM bundle, in order; keys and other blocks are dropped. */
export function splitPemCertificates(text: string): string[] {
    return (text.match(CERT_BLOCK) ?? []).map((block) => `${block}\n`);
}

function x509(pem: string): X509Certificate {
    return new X509Certificate(pem);
}

/** The CN of a distinguished name as Node prints it (one `key=value` per line). */
function commonName(dn: string): string {
    for (const line of dn.split("\n")) {
        if (line.startsWith("CN=")) return line.slice(3);
    }
    return "";
}

/** DNS entries of Node's subjectAltName text, e.g. `DNS:a.example, IP Address:10.0.0.1`. */
function dnsNames(subjectAltName: string | undefined): string[] {
    if (!subjectAltName) return [];
    const names: string[] = [];
    // Node quotes a value that contains a comma or quote as a JSON string.
    const entry = /(?:^|,\s*)([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)/g;
    for (const m of subjectAltName.matchAll(entry)) {
        if (m[1] !== "DNS") continue;
        names.push(m[2].startsWith('"') ? (JSON.parse(m[2]) as string) : m[2]);
    }
    return names;
}

/** Parses one PEM certificate (the first block if several are given). */
export function parseCertificate(pem: string): ParsedCertificate {
    const cert = x509(pem);
    return {
        subjectCN: commonName(cert.subject),
        issuerCN: commonName(cert.issuer),
        serial: normalizeSerial(cert.serialNumber),
        notBefore: new Date(cert.validFrom),
        notAfter: new Date(cert.validTo),
        sans: dnsNames(cert.subjectAltName),
        // Node 20 names the extended key usage list `keyUsage`; later versions add `extKeyUsage`.
        extKeyUsage: (cert as X509Certificate & { extKeyUsage?: string[] }).extKeyUsage ?? cert.keyUsage ?? [],
        isCA: cert.ca,
    };
}

/**
 * Canonical serial: lowercase hex bytes joined by ':' (Vault's `serial_number`),
 * from either that form or plain hex. Leading zero bytes are dropped, as Vault
 * formats the integer's minimal big-endian bytes.
 */
export function normalizeSerial(serial: string): string {
    const hex = serial.trim().toLowerCase().replace(/[:\s-]/g, "");
    if (!/^[0-9a-f]+$/.test(hex)) {
        throw new Error(`not a certificate serial number: expected hex digits, optionally colon-separated (got ${JSON.stringify(serial)})`);
    }
    const even = hex.length % 2 === 0 ? hex : `0${hex}`;
    const bytes = even.match(/../g) ?? [];
    while (bytes.length > 1 && bytes[0] === "00") bytes.shift();
    return bytes.join(":");
}

/** True when `issuerPem` issued `leafPem`: names match and the signature verifies with its key. */
export function chainsTo(leafPem: string, issuerPem: string): boolean {
    try {
        const leaf = x509(leafPem);
        const issuer = x509(issuerPem);
        return leaf.checkIssued(issuer) && leaf.verify(issuer.publicKey);
    } catch {
        return false;
    }
}
