import Foundation
import SquisherCommands

exit(SquisherTool.main(Array(CommandLine.arguments.dropFirst())))
