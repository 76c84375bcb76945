using Granite.Core.Modeling;
using Granite.Core.State;
using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Core.Generation;

public sealed partial class GraniteEngine
{
    /// <summary>
    /// Processes the prompt tokens <paramref name="state"/> does not cover yet and returns the logits of the last prompt
    /// position. With session reuse on, stores a shared snapshot at every <see cref="GenerationRequest.SnapshotAt"/>
    /// length on the way (prefill in pieces is exact) and a snapshot of the whole prompt at the end. A snapshot is only
    /// taken after its forward pass completed, so a failed pass never leaves a corrupt snapshot. Inference thread only.
    /// <paramref name="cancellationToken"/> stops the pass between layers.
    /// </summary>
    internal Tensor PrefillRemainder(InferenceState state, IReadOnlyList<int> prompt, GenerationRequest request, CancellationToken cancellationToken = default)
    {
        bool store = request.UseSessionCache && Sessions.Enabled;
        if (store && request.SnapshotAt is { Count: > 0 } cuts)
        {
            foreach (int cut in cuts.Where(c => c > state.Length && c < prompt.Count).Distinct().Order())
            {
                var piece = Slice(prompt, state.Length, cut);
                Model.Forward(piece, state, cancellationToken).Dispose();
                Sessions.Store(state, shared: true);
            }
        }
        var logits = Model.Forward(Slice(prompt, state.Length, prompt.Count), state, cancellationToken);
        if (store) Sessions.Store(state, request.SessionKey, supersede: true);
        return logits;
    }

    /// <summary>
    /// Processes <paramref name="tokens"/> (resuming from the longest stored prefix) and stores the resulting state as a
    /// session snapshot, without generating. Use it to warm a shared prefix (system prompt + tools) before traffic
    /// arrives, or to store the state of a conversation exactly as the chat template re-renders it.
    /// </summary>
    /// <param name="tokens">Token ids to cover.</param>
    /// <param name="sessionKey">Optional conversation key (see <see cref="GenerationRequest.SessionKey"/>).</param>
    /// <param name="shared">Mark the snapshot as a shared prefix (never superseded by a conversation).</param>
    /// <param name="cancellationToken">Cancels the work (before it starts, or between layers of its pass). Disposing the
    /// engine cancels it too.</param>
    /// <returns>The number of tokens that were restored from an existing snapshot (not processed). Not counted in the
    /// store's hit/miss/reuse counters, which describe generation requests.</returns>
    /// <exception cref="ArgumentException">Empty tokens, ids outside the vocabulary, or longer than the context window.</exception>
    public Task<int> PrefillAsync(IReadOnlyList<int> tokens, string? sessionKey = null, bool shared = false, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (tokens.Count == 0) throw new ArgumentException("No tokens to prefill.", nameof(tokens));
        TokenLimits.CheckContext(0, tokens.Count, Config.MaxPositionEmbeddings, "The prefill", nameof(tokens));
        TokenLimits.CheckInVocabulary(tokens, Config.VocabSize, nameof(tokens));
        var copy = tokens.ToArray();
        var lifetime = _worker.Lifetime;
        return _worker.RunAsync(() =>
        {
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, lifetime);
            if (!Sessions.Enabled) return 0;
            if (Sessions.LongestPrefixLength(copy) == copy.Length) return copy.Length;
            var (state, cached) = Sessions.Resume(Model, copy, count: false);
            using (state)
            {
                using var scope = torch.NewDisposeScope();
                Model.Forward(Slice(copy, state.Length, copy.Length), state, linked.Token).Dispose();
                Sessions.Store(state, sessionKey, shared, supersede: !shared);
                return cached;
            }
        }, cancellationToken);
    }

    private static int[] Slice(IReadOnlyList<int> tokens, int from, int to)
    {
        var a = new int[to - from];
        for (int i = from; i < to; i++) a[i - from] = tokens[i];
        return a;
    }
}
