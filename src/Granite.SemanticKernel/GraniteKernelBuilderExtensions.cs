using Granite.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;

namespace Microsoft.SemanticKernel;

/// <summary>Semantic Kernel registration of the in-process Granite chat client (in SK's namespace, like its connectors).</summary>
public static class GraniteKernelBuilderExtensions
{
    /// <summary>
    /// Registers Granite as the kernel's <see cref="Microsoft.Extensions.AI.IChatClient"/> with kernel function invocation
    /// in the pipeline (so <c>FunctionChoiceBehavior.Auto()</c> invokes plugins) and as
    /// <see cref="ChatCompletion.IChatCompletionService"/>; keyed by <paramref name="serviceId"/> when given (SK selects
    /// services by that id). The client is stateless (Semantic Kernel's chat history is resent each call, and session
    /// snapshots resume it): <see cref="GraniteChatClientOptions.StoreConversations"/> = true is rejected with an
    /// <see cref="Microsoft.Extensions.Options.OptionsValidationException"/> when the client is first resolved.
    /// </summary>
    public static IKernelBuilder AddGraniteChatClient(this IKernelBuilder builder, Action<GraniteChatClientOptions> configure, string? serviceId = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddGraniteKernelServices(configure, serviceId);
        return builder;
    }

    /// <summary>Same as <see cref="AddGraniteChatClient(IKernelBuilder, Action{GraniteChatClientOptions}, string?)"/> with a model folder.</summary>
    public static IKernelBuilder AddGraniteChatClient(this IKernelBuilder builder, string modelPath, string? modelId = null, string? serviceId = null)
    {
        ArgumentNullException.ThrowIfNull(modelPath);
        return builder.AddGraniteChatClient(o => { o.ModelPath = modelPath; o.ModelId = modelId ?? o.ModelId; }, serviceId);
    }
}
