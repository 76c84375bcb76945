using Granite.Core.State;
using Granite.Core.Tests.Modeling;
using TorchSharp;

namespace Granite.Core.Tests.Sessions;

/// <summary>
/// Taking and restoring a session snapshot runs outside any dispose scope (the session store resumes a request before its
/// first forward pass). Every temporary handle must be disposed there: a view or the handle that <c>copy_</c> returns keeps
/// the state's buffers alive until the GC finalizes it, so native memory grew with the number of resumed requests (found
/// by the soak campaign, docs/reliability.md).
/// </summary>
[Collection(NonParallelCollection.Name)]
public class SnapshotTensorOwnershipTests
{
    public SnapshotTensorOwnershipTests() => GraniteRuntime.EnsureLoaded();

    [Theory]
    [InlineData("tiny-h-moe", SnapshotStateDtype.Float32)]
    [InlineData("tiny-h-moe", SnapshotStateDtype.BFloat16)]
    [InlineData("tiny-dense", SnapshotStateDtype.Float32)]
    public void Capture_and_restore_outside_a_dispose_scope_leave_no_live_tensor(string fixture, SnapshotStateDtype dtype)
    {
        using var model = ModelParityTests.LoadF32(fixture);
        using var state = model.CreateState();
        using (model.Forward(Enumerable.Range(1, 70).ToArray(), state)) { } // past the first KV capacity (64): Grow copies
        using (StateSnapshot.Capture(state, dtype)) { }
        using (var warm = StateSnapshot.Capture(state, dtype)) using (warm.Restore(model)) { }

        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 0; i < 5; i++)
        {
            using var snapshot = StateSnapshot.Capture(state, dtype);
            using var restored = snapshot.Restore(model);
            restored.Length.Should().Be(70);
            // The restored state keeps working: its KV buffers grow again (Append past capacity, Grow) on the next token.
            using (model.Forward(Enumerable.Range(1, 64).ToArray(), restored)) { }
        }
        DisposeScopeManager.Statistics.ThreadTotalLiveCount.Should().Be(before, "capture, restore and append dispose every temporary handle");
    }
}
