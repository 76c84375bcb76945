using Microsoft.Extensions.AI;

namespace Granite.TestHelpers;

/// <summary>Functions the tool-calling tests declare to the model and invoke, recording each call.</summary>
public static class TestTools
{
    /// <summary><c>get_weather(city, days)</c>: returns <c>"Sunny in {city} for {days} days, 21 C"</c> and records the call.</summary>
    public static (AIFunction Tool, List<(string City, int Days)> Calls) Weather()
    {
        var calls = new List<(string, int)>();
        var tool = AIFunctionFactory.Create((string city, int days) =>
        {
            lock (calls) calls.Add((city, days));
            return $"Sunny in {city} for {days} days, 21 C";
        }, "get_weather", "Gets the weather forecast for a city");
        return (tool, calls);
    }
}
