using Granite.Extensions.AI;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;

namespace Granite.SemanticKernel;

/// <summary>Semantic Kernel registration of the in-process Granite chat client.</summary>
public static class GraniteKernelBuilderExtensions
{
    /// <summary>
    /// Registers Granite as the kernel's <see cref="IChatClient"/> with kernel function invocation in the pipeline (so
    /// <c>FunctionChoiceBehavior.Auto()</c> invokes plugins) and as <see cref="IChatCompletionService"/>. The client is
    /// stateless (Semantic Kernel's chat history is resent each call, and session snapshots resume it):
    /// <see cref="GraniteChatClientOptions.StoreConversations"/> = true is rejected with an
    /// <see cref="OptionsValidationException"/> when the client is first resolved or the host starts.
    /// </summary>
    public static IKernelBuilder AddGraniteChatClient(this IKernelBuilder builder, Action<GraniteChatClientOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddGraniteKernelServices(configure);
        return builder;
    }

    /// <summary>Same as <see cref="AddGraniteChatClient(IKernelBuilder, Action{GraniteChatClientOptions})"/> with a model folder.</summary>
    public static IKernelBuilder AddGraniteChatClient(this IKernelBuilder builder, string modelPath, string? modelId = null)
    {
        ArgumentNullException.ThrowIfNull(modelPath);
        return builder.AddGraniteChatClient(o => { o.ModelPath = modelPath; o.ModelId = modelId ?? o.ModelId; });
    }

    /// <summary>Service-collection form: Granite <see cref="IChatClient"/> with kernel function invocation, plus
    /// <see cref="IChatCompletionService"/> over it.</summary>
    public static IServiceCollection AddGraniteKernelServices(this IServiceCollection services, Action<GraniteChatClientOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddGraniteChatClient(configure).UseKernelFunctionInvocation();
        return AddKernelServices(services);
    }

    /// <summary>Service-collection form binding options from configuration (section <c>"Granite"</c>).</summary>
    public static IServiceCollection AddGraniteKernelServices(this IServiceCollection services, IConfiguration configuration, string sectionName = GraniteServiceCollectionExtensions.DefaultSectionName)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddGraniteChatClient(configuration, sectionName).UseKernelFunctionInvocation();
        return AddKernelServices(services);
    }

    private static IServiceCollection AddKernelServices(IServiceCollection services)
    {
        // SK's ChatHistory and KernelFunctionInvokingChatClient resend the whole history and carry no conversation id, so
        // stored conversations could never be referred to again (and a response id would make SK's loop send only the new
        // messages). Refuse the combination instead of filling the store.
        services.AddOptions<GraniteChatClientOptions>(Options.DefaultName).Validate(o => !o.StoreConversations,
            "GraniteChatClientOptions.StoreConversations must be false with the Semantic Kernel registration (AddGraniteChatClient on IKernelBuilder / AddGraniteKernelServices): Semantic Kernel resends the chat history on every call.");
        services.AddSingleton<IChatCompletionService>(sp => sp.GetRequiredService<IChatClient>().AsChatCompletionService(sp));
        return services;
    }
}
