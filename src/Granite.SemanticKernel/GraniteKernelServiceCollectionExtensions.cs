using Granite.Extensions.AI;
using Granite.SemanticKernel;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Configuration;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Service-collection form of the Semantic Kernel registration (for apps that build the kernel from DI).</summary>
public static class GraniteKernelServiceCollectionExtensions
{
    /// <summary>Granite <see cref="IChatClient"/> with kernel function invocation, plus <see cref="IChatCompletionService"/>
    /// over it; keyed by <paramref name="serviceId"/> when given.</summary>
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
        client.UseKernelFunctionInvocation().Use(inner => new StatelessConversationChatClient(inner));
        if (serviceId is null)
            services.AddSingleton<IChatCompletionService>(sp => sp.GetRequiredService<IChatClient>().AsChatCompletionService(sp));
        else
            services.AddKeyedSingleton<IChatCompletionService>(serviceId, (sp, key) => sp.GetRequiredKeyedService<IChatClient>(key).AsChatCompletionService(sp));
        return services;
    }
}
