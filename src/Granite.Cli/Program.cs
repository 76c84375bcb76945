using Granite.Cli;

return await GraniteCli.RunAsync(args, Console.Out, Console.Error);
