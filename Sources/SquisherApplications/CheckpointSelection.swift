/// Exact top-k selection over a stream of scores in constant memory (two 256 KB histograms), for
/// pruning and masks over checkpoints too large to hold their scores.
///
/// Why a histogram and not a score array: a global top-k needs the k-th largest of all scores,
/// which over a 7-billion-parameter model would be 28 GB of float32. Non-negative float32 values
/// order like their bit patterns read as `UInt32`, so the threshold can be found by radix
/// selection: one pass counts the top 16 bits (65,536 bins), which locates the bin holding the k-th
/// largest score; a second pass counts the low 16 bits within that bin, which gives the k-th
/// largest **exactly**. A third pass (the writing pass) keeps every score above the threshold and,
/// of the scores equal to it, the first ones in stream order (tensor order, then element index)
/// until `k` are kept: the same set and tie-breaking as ``ParameterMask``'s in-memory top-k.
/// Cost: three reads of the scores' inputs, O(1) memory.
struct StreamingTopK {
    /// Keep everything or nothing without a threshold.
    enum Mode { case all, none, threshold }
    var mode: Mode
    /// The k-th largest score's bit pattern.
    var thresholdBits: UInt32 = 0
    /// How many scores equal to the threshold are kept (the first ones in stream order).
    var tiesToKeep = 0
    private var tiesSeen = 0

    /// The bit pattern used for ordering (+0 for both zeros); scores must be finite and >= 0.
    @inline(__always) static func key(_ score: Float) -> UInt32 { score == 0 ? 0 : score.bitPattern }

    /// Finds the threshold keeping the `keep` largest of `total` scores; `scan` must feed every
    /// score, in the same order each time it is called (it is called twice).
    init<E: Error>(keep: Int, total: Int, scan: ((UnsafeBufferPointer<Float>) -> Void) throws(E) -> Void) throws(E) {
        if keep >= total { mode = .all; return }
        if keep <= 0 { mode = .none; return }
        mode = .threshold
        var high = [Int](repeating: 0, count: 1 << 16)
        try scan { chunk in high.withUnsafeMutableBufferPointer { h in for s in chunk { h[Int(Self.key(s) >> 16)] += 1 } } }
        var above = 0
        var bin = (1 << 16) - 1
        while bin > 0, above + high[bin] < keep { above += high[bin]; bin -= 1 }
        let top = UInt32(bin)
        var low = [Int](repeating: 0, count: 1 << 16)
        try scan { chunk in
            low.withUnsafeMutableBufferPointer { h in
                for s in chunk { let k = Self.key(s); if k >> 16 == top { h[Int(k & 0xFFFF)] += 1 } }
            }
        }
        var lowBin = (1 << 16) - 1
        while lowBin > 0, above + low[lowBin] < keep { above += low[lowBin]; lowBin -= 1 }
        thresholdBits = top << 16 | UInt32(lowBin)
        tiesToKeep = keep - above
    }

    /// Whether the next score in stream order is kept.
    @inline(__always) mutating func keeps(_ score: Float) -> Bool {
        switch mode {
        case .all: return true
        case .none: return false
        case .threshold:
            let k = Self.key(score)
            if k > thresholdBits { return true }
            if k == thresholdBits, tiesSeen < tiesToKeep { tiesSeen += 1; return true }
            return false
        }
    }
}
