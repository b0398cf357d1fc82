// Validates glTF/GLB files with the Khronos glTF-Validator; prints one JSON
// report summary per file: {file, errors, warnings, messages: [...]}.
const fs = require("fs");
const validator = require("gltf-validator");

async function main() {
  for (const file of process.argv.slice(2)) {
    const report = await validator.validateBytes(new Uint8Array(fs.readFileSync(file)), {
      maxIssues: 50,
    });
    const messages = report.issues.messages.map(
      (m) => `${["error", "warning", "info", "hint"][m.severity]} ${m.code} ${m.pointer || ""}: ${m.message}`
    );
    console.log(JSON.stringify({
      file,
      errors: report.issues.numErrors,
      warnings: report.issues.numWarnings,
      messages,
    }));
  }
}

main().catch((error) => {
  console.error(String(error));
  process.exit(1);
});
