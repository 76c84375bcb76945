using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;

namespace Granite.SemanticKernel;

/// <summary>
/// Removes the conversation id from responses, so the function-invoking client above it resends the whole history on
/// each round instead of relying on the client's stored conversation. Semantic Kernel's
/// <c>KernelFunctionInvokingChatClient</c> needs the full history in its invocation context (with a conversation id it
/// receives none and fails); Granite renders the full history either way, and session-state reuse still avoids
/// re-processing it.
/// </summary>
internal sealed class StatelessConversationChatClient(IChatClient inner) : DelegatingChatClient(inner)
{
    public override async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var response = await base.GetResponseAsync(messages, options, cancellationToken).ConfigureAwait(false);
        if (options?.ConversationId is null) response.ConversationId = null;
        return response;
    }

    public override async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await foreach (var update in base.GetStreamingResponseAsync(messages, options, cancellationToken).ConfigureAwait(false))
        {
            if (options?.ConversationId is null) update.ConversationId = null;
            yield return update;
        }
    }
}
