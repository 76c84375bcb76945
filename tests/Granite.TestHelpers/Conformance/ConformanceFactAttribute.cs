using Xunit.Abstractions;
using Xunit.Sdk;

namespace Granite.TestHelpers.Conformance;

/// <summary>
/// A <see cref="FactAttribute"/> for the abstract conformance suites: the test runs on every concrete subclass, except
/// that a subclass marked <see cref="RequiresEnvironmentVariableAttribute"/> whose variable is unset reports each test as
/// skipped with the attribute's reason (xunit 2 has no other way for a subclass to skip inherited facts).
/// </summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = false)]
[XunitTestCaseDiscoverer("Granite.TestHelpers.Conformance.ConformanceFactDiscoverer", "Granite.TestHelpers")]
public sealed class ConformanceFactAttribute : FactAttribute;

/// <summary>
/// Marks a concrete conformance test class that needs an external resource named by an environment variable (e.g. a real
/// checkpoint in <c>GRANITE_MODEL_PATH</c>). Unset or empty: its <see cref="ConformanceFactAttribute"/> tests are skipped
/// with <see cref="Reason"/>. Set: they run, and a wrong value fails them.
/// </summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class RequiresEnvironmentVariableAttribute(string variable, string reason) : Attribute
{
    /// <summary>The environment variable.</summary>
    public string Variable { get; } = variable;

    /// <summary>The skip reason shown when it is unset.</summary>
    public string Reason { get; } = reason;
}

/// <summary>Discovers <see cref="ConformanceFactAttribute"/> tests (see there).</summary>
public sealed class ConformanceFactDiscoverer(IMessageSink diagnosticMessageSink) : IXunitTestCaseDiscoverer
{
    private readonly FactDiscoverer _facts = new(diagnosticMessageSink);

    /// <inheritdoc />
    public IEnumerable<IXunitTestCase> Discover(ITestFrameworkDiscoveryOptions discoveryOptions, ITestMethod testMethod, IAttributeInfo factAttribute)
    {
        var requirement = testMethod.TestClass.Class.GetCustomAttributes(typeof(RequiresEnvironmentVariableAttribute)).FirstOrDefault();
        if (requirement is not null && factAttribute.GetNamedArgument<string>(nameof(FactAttribute.Skip)) is null)
        {
            var args = requirement.GetConstructorArguments().ToArray();
            string variable = (string)args[0], reason = (string)args[1];
            if (string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable(variable)))
            {
                return [new XunitSkippedDataRowTestCase(diagnosticMessageSink, discoveryOptions.MethodDisplayOrDefault(),
                    discoveryOptions.MethodDisplayOptionsOrDefault(), testMethod, $"{variable} is not set: {reason}")];
            }
        }
        return _facts.Discover(discoveryOptions, testMethod, factAttribute);
    }
}
