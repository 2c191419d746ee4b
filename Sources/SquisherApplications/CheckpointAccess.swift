import SquisherCheckpoints

/// Runs a checkpoint read or write and reports its failure as the applications' error: the
/// ``CheckpointError`` (naming the file and tensor) becomes the cause of an ``ApplicationError``
/// of `application` (`"checkpoint"` by default).
func checkpoint<T>(_ application: String = "checkpoint", _ body: () throws(CheckpointError) -> T) throws(ApplicationError) -> T {
    do { return try body() } catch { throw ApplicationError(application: application, cause: error) }
}

/// The layout writer's failures as the applications' `"output"` errors.
func outputFailure(_ error: CheckpointError) -> ApplicationError { ApplicationError(application: "output", cause: error) }
