using Microsoft.Extensions.AI;

namespace Granite.Extensions.AI;

/// <summary>
/// Conversation histories kept by the client in stored mode (<see cref="GraniteChatClientOptions.StoreConversations"/>),
/// keyed by conversation id (least recently used dropped beyond a count). A request that passes an id back sends only its
/// new messages and the stored history is put in front of them — the <see cref="ChatOptions.ConversationId"/> contract of
/// Microsoft.Extensions.AI (FunctionInvokingChatClient relies on it). A capacity of 0 stores nothing (stateless client).
/// </summary>
internal sealed class ConversationStore(int capacity)
{
    private readonly object _gate = new();
    private readonly Dictionary<string, LinkedListNode<(string Id, IReadOnlyList<ChatMessage> Messages)>> _map = new(StringComparer.Ordinal);
    private readonly LinkedList<(string Id, IReadOnlyList<ChatMessage> Messages)> _lru = new();

    public int Count { get { lock (_gate) return _map.Count; } }

    /// <summary>The stored history of <paramref name="conversationId"/>, or null when unknown (never stored or evicted).</summary>
    public IReadOnlyList<ChatMessage>? TryGet(string conversationId)
    {
        lock (_gate)
        {
            if (!_map.TryGetValue(conversationId, out var node)) return null;
            _lru.Remove(node);
            _lru.AddFirst(node);
            return node.Value.Messages;
        }
    }

    /// <summary>Replaces the history of <paramref name="conversationId"/>.</summary>
    public void Set(string conversationId, IReadOnlyList<ChatMessage> messages)
    {
        if (capacity <= 0) return;
        lock (_gate)
        {
            if (_map.TryGetValue(conversationId, out var old)) _lru.Remove(old);
            var node = _lru.AddFirst((conversationId, messages));
            _map[conversationId] = node;
            while (_map.Count > capacity && _lru.Last is { } last)
            {
                _lru.RemoveLast();
                _map.Remove(last.Value.Id);
            }
        }
    }
}
