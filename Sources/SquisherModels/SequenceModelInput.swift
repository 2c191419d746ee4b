import SquisherTensor

/// How the Hugging Face models here take their inputs in one tensor (so that a data set's rows
/// keep each sample's ids and masks together): `[N, T]` token ids, or `[N, K, T]` with channel 0
/// the ids, channel 1 the `attention_mask` (1 = token, 0 = padding) and, for BERT, channel 2 the
/// `token_type_ids`. All as floats (ids exact up to 2^24).
public enum SequenceModelInput {
    /// Packs ids `[N, T]` with optional mask and token types `[N, T]` into `[N, K, T]` (or returns the ids).
    /// - Throws: ``TensorError/shapeMismatch(operation:expected:actual:)`` unless every part is `[N, T]`.
    public static func pack(inputIDs: Tensor, attentionMask: Tensor?, tokenTypeIDs: Tensor? = nil) throws(TensorError) -> Tensor {
        guard inputIDs.rank == 2 else { throw .shapeMismatch(operation: "model inputs", expected: "input_ids [N, T]", actual: inputIDs.shape) }
        var channels = [inputIDs]
        if let attentionMask {
            try attentionMask.checkShape(inputIDs.shape, "attention_mask (must match input_ids)")
            channels.append(attentionMask)
        }
        if let tokenTypeIDs {
            try tokenTypeIDs.checkShape(inputIDs.shape, "token_type_ids (must match input_ids)")
            if attentionMask == nil { channels.append(Tensor(repeating: 1, shape: inputIDs.shape)) }
            channels.append(tokenTypeIDs)
        }
        guard channels.count > 1 else { return inputIDs }
        let (n, t) = (inputIDs.shape[0], inputIDs.shape[1])
        var scalars = [Float](repeating: 0, count: n * channels.count * t)
        for sample in 0..<n {
            for (k, channel) in channels.enumerated() {
                for step in 0..<t { scalars[(sample * channels.count + k) * t + step] = channel.scalars[sample * t + step] }
            }
        }
        return Tensor(uncheckedShape: [n, channels.count, t], scalars: scalars)
    }

    /// Splits a packed input into ids, mask and token types (`[N, T]` each; nil when absent).
    /// - Throws: ``TensorError/shapeMismatch(operation:expected:actual:)`` naming `model`.
    public static func unpack(_ input: Tensor, model: String, maximumChannels: Int) throws(TensorError) -> (ids: Tensor, mask: Tensor?, types: Tensor?) {
        if input.rank == 2 { return (input, nil, nil) }
        guard input.rank == 3, (1...maximumChannels).contains(input.shape[1]) else {
            throw .shapeMismatch(operation: "\(model) forward", expected: "token ids [N, T] or [N, K <= \(maximumChannels), T] (ids, attention_mask, token_type_ids)", actual: input.shape)
        }
        let (n, k, t) = (input.shape[0], input.shape[1], input.shape[2])
        func channel(_ c: Int) -> Tensor {
            Tensor(uninitializedShape: [n, t]) { out in
                input.withUnsafeBufferPointer { x in
                    for sample in 0..<n { (out.baseAddress! + sample * t).update(from: x.baseAddress! + (sample * k + c) * t, count: t) }
                }
            }
        }
        return (channel(0), k > 1 ? channel(1) : nil, k > 2 ? channel(2) : nil)
    }
}
