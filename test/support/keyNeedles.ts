// What would betray a private key if it turned up somewhere else.
import * as crypto from "crypto";

/**
 * Strings that only a copy of this EC private key can contain: the PEM body
 * lines that carry its private scalar, and the scalar itself (hex, base64,
 * base64url as in a JWK). Lines that hold only public-key bytes are left out:
 * the public key is in every CSR and certificate of that key, whose base64 can
 * contain the same characters when the byte offsets happen to align.
 */
export function privateKeyNeedles(pem: string): string[] {
    const jwk = crypto.createPrivateKey(pem).export({ format: "jwk" });
    if (jwk.d === undefined) throw new Error("privateKeyNeedles: not a private key");
    const scalar = Buffer.from(jwk.d, "base64url");
    const body = pem.split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("-----"));
    const der = Buffer.from(body.join(""), "base64");
    const at = der.indexOf(scalar);
    if (at < 0) throw new Error("privateKeyNeedles: the private scalar is not in the key's DER");
    // A 64-character PEM line holds 48 bytes.
    const lines = body.filter((_, i) => i * 48 < at + scalar.length && (i + 1) * 48 > at);
    return [...lines, scalar.toString("hex"), scalar.toString("base64"), scalar.toString("base64url")];
}
