namespace Granite.Core.Training;

/// <summary>
/// Linear warm-up to <see cref="Peak"/> over <see cref="WarmupSteps"/>, then either cosine decay to <see cref="Floor"/>
/// at <see cref="TotalSteps"/> or, when <see cref="Constant"/>, the peak for every later step (so the rate of a step
/// does not depend on how many steps the run has).
/// </summary>
internal sealed record LearningRateSchedule(double Peak, long WarmupSteps, long TotalSteps, double Floor = 0, bool Constant = false)
{
    /// <summary>The learning rate of step <paramref name="step"/> (0-based).</summary>
    public double At(long step)
    {
        if (WarmupSteps > 0 && step < WarmupSteps) return Peak * (step + 1) / WarmupSteps;
        if (Constant || TotalSteps <= WarmupSteps) return Peak;
        double progress = Math.Clamp((double)(step - WarmupSteps) / (TotalSteps - WarmupSteps), 0, 1);
        return Floor + (Peak - Floor) * 0.5 * (1 + Math.Cos(Math.PI * progress));
    }
}
