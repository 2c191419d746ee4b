import Foundation
import SquisherCommands

// Interrupted runs remove their staging files and folders before ending.
SquisherTool.installSignalCleanup()
exit(SquisherTool.main(Array(CommandLine.arguments.dropFirst())))
