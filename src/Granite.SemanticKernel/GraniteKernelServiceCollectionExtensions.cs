using Granite.Extensions.AI;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Configuration;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Service-collection form of the Semantic Kernel registration (for apps that build the kernel from DI).</summary>
public static class GraniteKernelServiceCollectionExtensions
{
    /// <summary>Granite <see cref="IChatClient"/> with kernel function invocation, plus <see cref="IChatCompletionService"/>
    /// over it; keyed by <paramref name="serviceId"/> when given. <see cref="GraniteChatClientOptions.StoreConversations"/>
    /// must stay false (validated when the client is first resolved).</summary>
    public static IServiceCollection AddGraniteKernelServices(this IServiceCollection services, Action<GraniteChatClientOptions> configure, string? serviceId = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        return Register(services, serviceId, serviceId is null ? services.AddGraniteChatClient(configure) : services.AddKeyedGraniteChatClient(serviceId, configure));
    }

    /// <summary>Same, binding the options from a configuration section (by default <c>"Granite"</c>).</summary>
    public static IServiceCollection AddGraniteKernelServices(this IServiceCollection services, IConfiguration configuration, string sectionName = GraniteServiceCollectionExtensions.DefaultSectionName, string? serviceId = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configuration);
        return Register(services, serviceId, serviceId is null
            ? services.AddGraniteChatClient(configuration, sectionName)
            : services.AddKeyedGraniteChatClient(serviceId, configuration, sectionName));
    }

    private static IServiceCollection Register(IServiceCollection services, string? serviceId, ChatClientBuilder client)
    {
        client.UseKernelFunctionInvocation();
        // SK's ChatHistory and KernelFunctionInvokingChatClient resend the whole history and carry no conversation id, so
        // stored conversations could never be referred to again (and a response id would make SK's loop send only the new
        // messages). Refuse the combination instead of filling the store.
        services.AddOptions<GraniteChatClientOptions>(serviceId ?? Options.Options.DefaultName).Validate(o => !o.StoreConversations,
            "GraniteChatClientOptions.StoreConversations must be false with the Semantic Kernel registration (AddGraniteChatClient on IKernelBuilder / AddGraniteKernelServices): Semantic Kernel resends the chat history on every call.");
        if (serviceId is null)
            services.AddSingleton<IChatCompletionService>(sp => sp.GetRequiredService<IChatClient>().AsChatCompletionService(sp));
        else
            services.AddKeyedSingleton<IChatCompletionService>(serviceId, (sp, key) => sp.GetRequiredKeyedService<IChatClient>(key).AsChatCompletionService(sp));
        return services;
    }
}
