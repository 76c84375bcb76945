using System.ComponentModel;

namespace Granite.TestHelpers;

/// <summary>The unit of <see cref="WeatherReport.Temperature"/>.</summary>
public enum TemperatureUnit { Celsius, Fahrenheit }

/// <summary>Wind in a <see cref="WeatherReport"/>.</summary>
public sealed record Wind(double SpeedKmh, string? Direction);

/// <summary>The typed result of the structured-output tests (client, Agent Framework): a schema with an enum, a list, a
/// nested nullable record and a nullable string.</summary>
[Description("A weather report")]
public sealed record WeatherReport(string City, double Temperature, TemperatureUnit Unit, List<string> Conditions, Wind? Wind, string? Note);
