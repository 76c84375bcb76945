using System.Runtime.CompilerServices;
using Granite.Extensions.AI;
using Microsoft.Extensions.AI;

namespace Granite.SemanticKernel;

/// <summary>
/// Removes the conversation id from responses, so the function-invoking client above it resends the whole history on
/// each round instead of relying on the client's stored conversation. Semantic Kernel's
/// <c>KernelFunctionInvokingChatClient</c> needs the full history in its invocation context (with a conversation id it
/// receives none and fails); Granite renders the full history either way, and session-state reuse still avoids
/// re-processing it. Requests without a conversation id also ask the client not to keep their history (nobody can refer
/// to it), so a long-running kernel does not fill the client's conversation store.
/// </summary>
internal sealed class StatelessConversationChatClient(IChatClient inner) : DelegatingChatClient(inner)
{
    public override async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var response = await base.GetResponseAsync(messages, Stateless(options), cancellationToken).ConfigureAwait(false);
        if (options?.ConversationId is null) response.ConversationId = null;
        return response;
    }

    public override async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await foreach (var update in base.GetStreamingResponseAsync(messages, Stateless(options), cancellationToken).ConfigureAwait(false))
        {
            if (options?.ConversationId is null) update.ConversationId = null;
            yield return update;
        }
    }

    /// <summary>A copy of <paramref name="options"/> asking the client not to store the history (the caller's object is untouched).</summary>
    private static ChatOptions? Stateless(ChatOptions? options)
    {
        if (options?.ConversationId is not null) return options;
        var copy = options?.Clone() ?? new ChatOptions();
        copy.AdditionalProperties = copy.AdditionalProperties?.Clone() ?? new AdditionalPropertiesDictionary();
        copy.AdditionalProperties[GraniteChatClient.StoreConversationKey] = false;
        return copy;
    }
}
