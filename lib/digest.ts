// The one SHA-256 the program names things by: a text's digest as lowercase hex.
import { createHash } from "crypto";

/** SHA-256 of `data` (a string is hashed as UTF-8), lowercase hex. */
export function sha256Hex(data: string | Buffer): string {
    return createHash("sha256").update(data).digest("hex");
}
