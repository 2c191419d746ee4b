import Foundation
import PackagePlugin

/// `swift package ablate [options]`: builds the `squisher` tool in release and runs
/// `squisher ablate`, writing the report into `<package>/report` (unless `--output` is given).
/// A thin wrapper: every option is passed through to `squisher ablate` (see `squisher ablate --help`).
@main
struct AblatePlugin: CommandPlugin {
    func performCommand(context: PluginContext, arguments: [String]) async throws {
        let build = try packageManager.build(.product("squisher"), parameters: .init(configuration: .release, logging: .concise))
        guard build.succeeded, let tool = build.builtArtifacts.first(where: { $0.kind == .executable && $0.url.lastPathComponent == "squisher" }) else {
            Diagnostics.error("building squisher in release failed:\n\(build.logText)")
            return
        }
        var passed = arguments
        if !passed.contains("--output") && !passed.contains(where: { $0.hasPrefix("--output=") }) && !passed.contains("--no-report") {
            passed += ["--output", context.package.directoryURL.appendingPathComponent("report").path]
        }
        let process = Process()
        process.executableURL = tool.url
        process.arguments = ["ablate"] + passed
        try process.run()
        process.waitUntilExit()
        if process.terminationStatus != 0 {
            Diagnostics.error("squisher ablate exited with status \(process.terminationStatus)")
        }
    }
}
