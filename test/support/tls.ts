// Test-time certificates made with the `openssl` CLI in a temp directory that
// the caller removes. No key made here is ever written inside the repository.
//
// `openssl ca` is used for every issued cert because OpenSSL 3.0's `x509`/`req`
// cannot set arbitrary validity dates (`-not_before`/`-not_after` arrived in 3.4),
// and the checklist tests need expired and not-yet-valid leaves.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

export interface TestCert {
    name: string;
    certPem: string;
    keyPem: string;
    certFile: string;
    keyFile: string;
    commonName: string;
}

export interface IssueOptions {
    /** Signing CA; omitted for a self-signed root. */
    issuer?: TestCert;
    commonName: string;
    /** DNS SANs. */
    dnsNames?: string[];
    /** IP SANs, e.g. 127.0.0.1 for a loopback test server. */
    ipAddresses?: string[];
    isCA?: boolean;
    /** Extended key usage; defaults: none for CAs, serverAuth otherwise. */
    usage?: ("serverAuth" | "clientAuth")[];
    /** Defaults: one hour ago and `days` (default 2) from now. */
    notBefore?: Date;
    notAfter?: Date;
    days?: number;
    /**
     * Include the authorityKeyIdentifier (default true). Without it a verifier can
     * only match the issuer by name, so only the signature tells two same-named CAs apart.
     */
    authorityKeyId?: boolean;
}

export class TestPki {
    readonly dir: string;
    private counter = 0;

    private constructor(dir: string) {
        this.dir = dir;
        fs.mkdirSync(path.join(dir, "newcerts"));
        fs.writeFileSync(path.join(dir, "index.txt"), "");
        fs.writeFileSync(path.join(dir, "serial"), "1000\n");
        fs.writeFileSync(
            path.join(dir, "ca.cnf"),
            [
                "[ ca ]",
                "default_ca = CA_default",
                "[ CA_default ]",
                `database = ${path.join(dir, "index.txt")}`,
                `new_certs_dir = ${path.join(dir, "newcerts")}`,
                // Required by `openssl ca` even though -rand_serial picks random serials.
                `serial = ${path.join(dir, "serial")}`,
                "default_md = sha256",
                "policy = policy_any",
                "unique_subject = no",
                "copy_extensions = none",
                "email_in_dn = no",
                "[ policy_any ]",
                "commonName = supplied",
                "",
            ].join("\n"),
        );
    }

    /** A fresh PKI in its own temp directory; call `cleanup()` when done. */
    static create(): TestPki {
        return new TestPki(fs.mkdtempSync(path.join(os.tmpdir(), "vault-rotation-tls-")));
    }

    cleanup(): void {
        fs.rmSync(this.dir, { recursive: true, force: true });
    }

    /** Writes a file into the temp directory and returns its path. */
    writeFile(name: string, content: string): string {
        const file = path.join(this.dir, name);
        fs.writeFileSync(file, content, { mode: 0o600 });
        return file;
    }

    /** A self-signed root CA (valid from a day ago for 30 days). */
    rootCa(commonName: string): TestCert {
        const name = this.nextName(commonName);
        const keyFile = path.join(this.dir, `${name}.key`);
        const certFile = path.join(this.dir, `${name}.pem`);
        openssl([
            "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", keyFile, "-out", certFile, "-subj", `/CN=${commonName}`, "-days", "30",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        return this.load(name, commonName, certFile, keyFile);
    }

    /** A certificate signed by `options.issuer` with the chosen names, usage and validity. */
    issue(options: IssueOptions & { issuer: TestCert }): TestCert {
        const name = this.nextName(options.commonName);
        const keyFile = path.join(this.dir, `${name}.key`);
        const csrFile = path.join(this.dir, `${name}.csr`);
        const certFile = path.join(this.dir, `${name}.pem`);
        const extFile = path.join(this.dir, `${name}.ext`);
        openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", keyFile, "-out", csrFile, "-subj", `/CN=${options.commonName}`]);

        const ext = ["[ ext ]", "subjectKeyIdentifier = hash"];
        // OpenSSL 3 adds the authority key id by default; `none` is how to leave it out.
        ext.push(`authorityKeyIdentifier = ${options.authorityKeyId === false ? "none" : "keyid"}`);
        if (options.isCA) {
            ext.push("basicConstraints = critical,CA:TRUE,pathlen:0", "keyUsage = critical,keyCertSign,cRLSign");
        } else {
            ext.push("basicConstraints = critical,CA:FALSE", "keyUsage = critical,digitalSignature");
            ext.push(`extendedKeyUsage = ${(options.usage ?? ["serverAuth"]).join(",")}`);
        }
        const sans = [...(options.dnsNames ?? []).map((d) => `DNS:${d}`), ...(options.ipAddresses ?? []).map((ip) => `IP:${ip}`)];
        if (sans.length > 0) ext.push(`subjectAltName = ${sans.join(",")}`);
        fs.writeFileSync(extFile, `${ext.join("\n")}\n`);

        const notBefore = options.notBefore ?? new Date(Date.now() - 3600_000);
        const notAfter = options.notAfter ?? new Date(Date.now() + (options.days ?? 2) * 86400_000);
        openssl([
            "ca", "-batch", "-notext", "-rand_serial", "-config", path.join(this.dir, "ca.cnf"),
            "-cert", options.issuer.certFile, "-keyfile", options.issuer.keyFile, "-in", csrFile, "-out", certFile,
            "-startdate", asn1Time(notBefore), "-enddate", asn1Time(notAfter), "-extfile", extFile, "-extensions", "ext",
        ]);
        return this.load(name, options.commonName, certFile, keyFile);
    }

    private nextName(commonName: string): string {
        this.counter += 1;
        return `${String(this.counter).padStart(2, "0")}-${commonName.replace(/[^A-Za-z0-9.-]/g, "_")}`;
    }

    private load(name: string, commonName: string, certFile: string, keyFile: string): TestCert {
        return { name, commonName, certFile, keyFile, certPem: fs.readFileSync(certFile, "utf8"), keyPem: fs.readFileSync(keyFile, "utf8") };
    }
}

/** `YYYYMMDDHHMMSSZ`, the form `openssl ca -startdate/-enddate` takes. */
function asn1Time(date: Date): string {
    return `${date.toISOString().replace(/[-:T]/g, "").slice(0, 14)}Z`;
}

function openssl(args: string[]): void {
    try {
        execFileSync("openssl", args, { stdio: ["ignore", "pipe", "pipe"] });
    } catch (e) {
        const err = e as { stderr?: Buffer; message: string };
        throw new Error(`openssl ${args[0]} failed: ${err.stderr?.toString() ?? err.message}`);
    }
}

/** A listener CA and a server cert for 127.0.0.1 and localhost, as a test Vault's listener would have. */
export function makeListenerTls(pki: TestPki): { ca: TestCert; server: TestCert; caFile: string } {
    const ca = pki.rootCa("Test Listener CA");
    const server = pki.issue({ issuer: ca, commonName: "vault.test", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], usage: ["serverAuth"] });
    return { ca, server, caFile: pki.writeFile("listener-ca.pem", ca.certPem) };
}
