/// What computing an importance estimate cost, beyond the training that was done anyway.
///
/// The Squisher's cost is ~0 by construction (it reads an accumulator training already filled);
/// the Fisher variants need extra passes over data [1].
///
/// [1]: Li, Dangel, Tam, Raffel 2025, Fishers for Free?
public struct EstimationCost: Sendable, Hashable, Codable {
    /// Extra forward passes over mini-batches.
    public var forwardPasses: Int
    /// Extra backward passes over mini-batches (the exact true Fisher needs one per class).
    public var backwardPasses: Int
    /// Distinct samples read.
    public var samplesTouched: Int
    /// Wall-clock seconds.
    public var seconds: Double
    /// Peak memory allocated by the estimator beyond the model and data, in bytes
    /// (accumulators plus the largest per-batch temporary).
    public var peakExtraBytes: Int

    public init(forwardPasses: Int = 0, backwardPasses: Int = 0, samplesTouched: Int = 0, seconds: Double = 0, peakExtraBytes: Int = 0) {
        self.forwardPasses = forwardPasses
        self.backwardPasses = backwardPasses
        self.samplesTouched = samplesTouched
        self.seconds = seconds
        self.peakExtraBytes = peakExtraBytes
    }

    /// No cost at all.
    public static let free = EstimationCost()
}
